"""Closed vocabularies of a talk's config."""

RESULT_FORMATS = ("mp4", "mov", "gif")  # config.result_format
DEFAULT_RESULT_FORMAT = "mp4"
EXPRESSIONS = ("neutral", "happy", "serious", "surprise")  # config.driver_expressions[].expression
AUDIO_FORMATS = ("mp3", "wav", "m4a", "flac", "mp4")  # script.audio_url, POST /audios
RESULT_CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "gif": "image/gif"}
PLACEHOLDER_LOGO_URL = "ai"  # D-ID echoes its own watermark as config.logo.url "ai"; clients copy it back
