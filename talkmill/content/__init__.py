"""Content: sources (a path, URL or object-store key) parsed into Documents to read aloud.

Pure parsers, one module per format (`html`, `markdown`, `csvrows`, `text`), registered in `formats`, the
one list of the kinds and suffixes talkmill reads; `parse.ingest_bytes` picks the parser. Reading a
source's bytes is I/O and lives in connectors.sources; fetching the sources that CSV rows name, and the
Prefect task, in tasks.ingest.

This package imports nothing on its own: `talkmill --help` reads `formats` without any parser's imports.
"""
