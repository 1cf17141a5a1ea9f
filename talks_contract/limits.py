"""Sizes and lengths the Talks API allows (TALKS_API.md)."""

import unicodedata

TEXT_MIN_CHARS = 3  # script.input
TEXT_MAX_CHARS = 40_000
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # source_url, POST /images
MAX_AUDIO_BYTES = 15 * 1024 * 1024  # script.audio_url, POST /audios
MAX_AUDIO_SECONDS = 600  # script.audio_url: D-ID's 10 minutes
USER_DATA_MAX_CHARS = 1000  # user_data, 1 to 1000 characters


def text_length_problem(text: str) -> str | None:
    """Why a script text's length is refused, or None."""
    if TEXT_MIN_CHARS <= len(text) <= TEXT_MAX_CHARS:
        return None
    return f"{len(text):,} characters; allowed: {TEXT_MIN_CHARS} to {TEXT_MAX_CHARS:,}"


def spoken_text_problem(text: str) -> str | None:
    """Why a script text cannot be spoken, or None: its length, a control character (NUL and the like;
    line breaks and tabs are fine), or nothing a voice could say (only spaces or punctuation)."""
    if problem := text_length_problem(text):
        return problem
    control = next((c for c in text if unicodedata.category(c) == "Cc" and c not in "\n\r\t"), None)
    if control is not None:
        return f"holds the control character U+{ord(control):04X}; remove it"
    if not any(c.isalnum() for c in text):
        return "has no letter or digit to speak; give words"
    return None
