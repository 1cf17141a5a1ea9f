"""Closed vocabularies of a talk's config."""

RESULT_FORMATS = ("mp4", "mov", "gif")  # config.result_format
DEFAULT_RESULT_FORMAT = "mp4"
EXPRESSIONS = ("neutral", "happy", "serious", "surprise")  # config.driver_expressions[].expression
RESULT_CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "gif": "image/gif"}
