"""Object stores: where videos, sidecars and manifests go (and where an inbox is). One interface
(connectors.storage.base), one module per store, and the registry below: a URI's scheme picks the store.

    STORES["file"]  a local directory: a plain path or file:///path   connectors.storage.local
    STORES["s3"]    s3://bucket/prefix on AWS or an S3-compatible server connectors.storage.s3

Adding a store is one module with an opener `open_x(uri, s3) -> ObjectStore` and one entry in STORES.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlparse

from connectors.storage.base import ObjectInfo, ObjectStore, S3Settings, check_key, content_type_for
from connectors.storage.local import LocalStore, open_local
from connectors.storage.s3 import S3Store, open_s3
from talkmill.errors import ConfigError

__all__ = [
    "STORES", "LocalStore", "ObjectInfo", "ObjectStore", "S3Settings", "S3Store", "allowed_stores",
    "check_key", "content_type_for", "open_store",
]  # fmt: skip


class StoreKind(NamedTuple):
    opener: Callable[[str, S3Settings | None], ObjectStore]  # raises ConfigError saying what is wrong
    form: str  # how a URI of this store looks, for messages and help texts


STORES: dict[str, StoreKind] = {
    "file": StoreKind(open_local, "a folder or file:///path"),
    "s3": StoreKind(open_s3, "s3://bucket/prefix"),
}
PATH_SCHEME = "file"  # a URI without a scheme is a path


def allowed_stores() -> str:
    """What an output or inbox may be, e.g. "a folder or file:///path, s3://bucket/prefix"."""
    return ", ".join(kind.form for kind in STORES.values())


def open_store(uri: str, s3: S3Settings | None = None, *, option: str = "output") -> ObjectStore:
    """The store a URI names, by its scheme. `s3` (talkmill.config.S3Config or alike) gives the endpoint
    and region of S3 stores. A URI no store takes raises ConfigError naming `option` (the setting the URI
    came from), what was wrong, and the stores allowed."""
    scheme = urlparse(uri).scheme.lower()
    if len(scheme) <= 1:  # no scheme, or a Windows drive letter ("C:\\out")
        scheme = PATH_SCHEME
    kind = STORES.get(scheme)
    if kind is None:
        raise ConfigError(f"{option} {uri!r}: no store reads {scheme}:// URIs; allowed: {allowed_stores()}")
    try:
        return kind.opener(uri, s3)
    except ConfigError as error:
        raise ConfigError(f"{option} {uri!r}: {error}; allowed: {allowed_stores()}") from error
