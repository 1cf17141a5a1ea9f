"""Names and places of sources: a slug for ids, local paths, and links relative to the source they are in.

What a source may name locally: a file inside its own folder (any depth; symlinks followed, so one that
leads out is refused) or inside the folders the config allows (`fetch.local_roots`), nothing else. A
source read from a URL (http(s), s3) names URLs, and paths relative to its own URL, never local files.
Whoever can write a source (a CSV dropped in an inbox) can then make talkmill read, and upload, only what
sits beside it.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
REMOTE_SCHEMES = ("http", "https", "s3")


def slug(uri: str) -> str:
    """The file name's stem as a lowercase slug: ".../Remote Onboarding.html" → "remote-onboarding"."""
    path = urlparse(uri).path if "://" in uri else uri
    name = posixpath.basename(unquote(path).rstrip("/")) or urlparse(uri).netloc
    stem = posixpath.splitext(name)[0] if "." in name[1:] else name
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:60] or "source"


def is_local_reference(value: str) -> bool:
    """A path or a file:// URL, not a URL of another scheme."""
    return value.startswith("file://") or not URL_SCHEME.match(value)


def resolve_relative(value: str, base_uri: str) -> str:
    """`value` (a path or URL from inside the source at `base_uri`) as an absolute path or URL. Whether
    it may be used is `outside_folder_problem`'s to say."""
    if not is_local_reference(value):
        return value
    local = local_path(value)
    parsed = urlparse(base_uri)
    if local.is_absolute() and parsed.scheme in REMOTE_SCHEMES:
        return str(local)
    if parsed.scheme in ("http", "https"):
        return urljoin(base_uri, value)
    if parsed.scheme == "s3":
        key = posixpath.normpath(posixpath.join(posixpath.dirname(parsed.path), value)).lstrip("/")
        return f"s3://{parsed.netloc}/{key}"
    return str((local_path(base_uri).parent / local).resolve())


def outside_folder_problem(value: str, base_uri: str, local_roots: Sequence[Path] = ()) -> str | None:
    """Why the path or file:// URL `value`, named inside the source at `base_uri`, may not be used, or
    None: a local source may name files inside its own folder or `local_roots` only (symlinks followed);
    a source read from a URL may name paths relative to that URL, never local files. URLs are the URL
    policy's to judge."""
    if not is_local_reference(value):
        return None
    local = local_path(value)
    scheme = urlparse(base_uri).scheme
    if scheme in REMOTE_SCHEMES:
        if value.startswith("file://") or local.is_absolute():
            return f"{value!r}: a source read from {scheme}:// names URLs and relative paths, not local files"
        return None
    folder = local_path(base_uri).parent.resolve()
    target = (folder / local).resolve()
    if any(target.is_relative_to(root.resolve()) for root in (folder, *local_roots)):
        return None
    link = f" (a link to {target})" if target != Path(os.path.normpath(folder / local)) else ""
    where = "it or in fetch.local_roots" if local_roots else "it (other folders: fetch.local_roots)"
    return f"{value!r} is outside {folder}, the folder of this file{link}; name a file in {where}, or a URL"


def local_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri).expanduser()
