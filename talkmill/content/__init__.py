"""Content: sources (a path, URL or object-store key) read and parsed into Documents to read aloud.

Pure parsers, one module per format (`html`, `markdown`, `csvrows`, `text`), are apart from the I/O that
reads a source (`sources`); `parse.ingest_bytes` picks the parser. Fetching the sources that CSV rows name,
and the Prefect task, live in tasks.ingest.
"""

from connectors.sources import MAX_SOURCE_BYTES, read_source
from talkmill.content.parse import KINDS, SUFFIX_KINDS, detect_kind, ingest_bytes
from talkmill.content.uris import local_path, resolve_relative, slug

__all__ = [
    "KINDS", "MAX_SOURCE_BYTES", "SUFFIX_KINDS", "detect_kind", "ingest_bytes", "local_path", "read_source",
    "resolve_relative", "slug",
]  # fmt: skip
