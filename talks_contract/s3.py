"""One way to make a boto3 S3 client, for AWS and for S3-compatible stores (SeaweedFS, MinIO, R2)."""

from __future__ import annotations

from typing import Any


def s3_client(endpoint_url: str | None = None, region: str | None = None, **config: Any) -> Any:
    """Checksums only where S3 requires them (S3-compatible stores reject or mangle the CRCs boto3 now
    sends by default), path-style addressing with a custom endpoint; `config` adds botocore options
    (timeouts, retries, signature_version). boto3 is imported here: a second the local-only paths never pay."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=Config(**options, **config))
