"""Names and places of sources: a slug for ids, local paths, and links relative to the source they are in."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse


def slug(uri: str) -> str:
    """The file name's stem as a lowercase slug: ".../Remote Onboarding.html" → "remote-onboarding"."""
    path = urlparse(uri).path if "://" in uri else uri
    name = posixpath.basename(unquote(path).rstrip("/")) or urlparse(uri).netloc
    stem = posixpath.splitext(name)[0] if "." in name[1:] else name
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:60] or "source"


def resolve_relative(value: str, base_uri: str) -> str:
    """`value` (a path or URL from inside the source at `base_uri`) as an absolute path or URL."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", value, re.IGNORECASE) and not value.startswith("file://"):
        return value
    local = local_path(value)
    if local.is_absolute():
        return str(local)
    parsed = urlparse(base_uri)
    if parsed.scheme in ("http", "https"):
        return urljoin(base_uri, value)
    if parsed.scheme == "s3":
        key = posixpath.normpath(posixpath.join(posixpath.dirname(parsed.path), value)).lstrip("/")
        return f"s3://{parsed.netloc}/{key}"
    return str((local_path(base_uri).parent / local).resolve())


def local_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri).expanduser()
