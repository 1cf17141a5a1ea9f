"""Where the engine keeps files in S3 when TALKMILL_ENGINE_RESULTS_S3_URL is set (s3://bucket/prefix):
results at <prefix>/<talk id>/<file>, uploads at <prefix>/uploads/<kind>/<file>."""

from __future__ import annotations


def location(results_s3_url: str, *parts: str) -> tuple[str, str]:
    """(bucket, key) of `parts` under the results URL's prefix."""
    bucket, _, prefix = results_s3_url.removeprefix("s3://").partition("/")
    return bucket, "/".join(part.strip("/") for part in (prefix, *parts) if part.strip("/"))


def delete_talk_files(results_s3_url: str, endpoint_url: str | None, talk_id: str) -> None:
    from talks_contract.s3 import s3_client

    bucket, folder = location(results_s3_url, talk_id)
    client = s3_client(endpoint_url)
    listing = client.list_objects_v2(Bucket=bucket, Prefix=folder + "/")
    for item in listing.get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])
