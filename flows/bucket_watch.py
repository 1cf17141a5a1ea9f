"""bucket_watch: every new file in an inbox (s3://bucket/inbox/ or a local folder) starts ONE content_to_video
deployment run, however many watchers run at once and however often one is restarted.

    list the inbox → settle files whose runs ended → claim, move and start a run for each new file

Layout, all inside the inbox (one store, one listing; users drop files at the top):

    <name>                                 a new file of a format talkmill reads (talkmill.content.formats:
                                           .html .md .csv .txt ...), anywhere outside the folders below
    claims/<name>.<sha16>                  create-only marker (S3: If-None-Match: *): the watcher that wrote it
                                           handles the file; the other watchers leave it alone
    processing/<sha16>/<name>              the run's source while it runs (a stable URI the run can read)
    processed/<sha16>/<name>               its run completed
    failed/<sha16>/<name> (+ .reason.txt)  its run failed, crashed or was cancelled; the reason beside it

Decisions:
- The claim names the file by its CONTENT (sha256), not its name: a file dropped again unchanged is the
  same work, and its videos exist already; changed content is new work under the same name.
- Claim, then move to processing/, then start the run: the run never reads a file that is still moving.
  The run is created with an idempotency key derived from its source URI, so starting it again (a
  watcher that died after the move, the next tick settling it) returns the same run, never a second one.
- A watcher that dies between its claim and the move leaves a claim and a file in the inbox: once the
  claim is older than `stale_after` seconds another watcher takes the file over (the idempotency key still
  guarantees one run). An unchanged re-drop goes the same way: to processed/, without a new run.
- Watchers never wait for runs: each tick settles processing/ files whose runs have ended. S3 has no rename
  (move = copy + delete): a crash between the two leaves a copy that the next tick settles or ignores.
- Files appear only whole on S3; in a local inbox, write elsewhere and `mv` the file in.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from connectors.storage import ObjectStore, open_store
from talkmill.config import S3Config, load_config
from talkmill.content.formats import is_readable
from talkmill.errors import ObjectNotFound

DEPLOYMENT = "content_to_video/content-to-video"
FOLDERS = ("claims/", "processing/", "processed/", "failed/")
FAILED_STATES = ("FAILED", "CRASHED", "CANCELLED")


@flow(name="bucket_watch", log_prints=True)
def bucket_watch(
    inbox: str,
    output: str | None = None,
    config: str | None = None,
    deployment: str = DEPLOYMENT,
    s3_endpoint_url: str | None = None,
    stale_after: float = 300,
) -> dict[str, list[str]]:
    """Start one content_to_video run per new file in the inbox; move files along as their runs end.

    Args:
        inbox: The inbox: a local folder, or s3://bucket/prefix/ (its subfolders claims/, processing/,
            processed/ and failed/ are the watcher's own).
        output: Where the runs write videos and manifests; unset: the config's output.
        config: A YAML pipeline config for the runs; its s3 section (endpoint, region) also serves the inbox.
        deployment: The content_to_video deployment to run, as "<flow>/<deployment>".
        s3_endpoint_url: The inbox's S3 endpoint when the config has none (SeaweedFS, MinIO, R2).
        stale_after: Seconds after which a claim whose file is still in the inbox is taken over.
    """
    store = open_store(inbox, inbox_s3(config, s3_endpoint_url), option="inbox")
    keys = store.list()
    runs = RunTarget(deployment, output, config)
    # quote(): a store and a target hold no futures; Prefect need not walk them
    settled = [settle(quote(store), key, quote(runs)) for key in keys if key.startswith("processing/")]
    started = [start(quote(store), key, quote(runs), stale_after) for key in new_files(keys)]
    summary = {"started": [key for key in started if key], "settled": [key for key in settled if key]}
    print(f"bucket_watch {inbox}: started {len(summary['started'])}, settled {len(summary['settled'])}")
    return summary


class RunTarget:
    """The content_to_video deployment and the parameters every run from this inbox shares."""

    def __init__(self, deployment: str, output: str | None, config: str | None) -> None:
        self.deployment, self.output, self.config = deployment, output, config

    def run_for(self, source: str) -> Any:
        """The run reading `source`: created the first time, the same run every later time."""
        parameters = {"sources": [source], "output": self.output, "config": self.config}
        return run_deployment(
            self.deployment, parameters={k: v for k, v in parameters.items() if v is not None},
            timeout=0, idempotency_key=f"bucket-watch:{source}", as_subflow=False, tags=["bucket-watch"],
        )  # fmt: skip


def inbox_s3(config: str | None, endpoint_url: str | None) -> S3Config:
    """The config's S3 settings (endpoint and region), the endpoint argument winning when given."""
    settings = load_config(Path(config)).s3 if config else S3Config()
    return settings.model_copy(update={"endpoint_url": endpoint_url}) if endpoint_url else settings


# -- pure: names and decisions ---------------------------------------------------------------------------


def new_files(keys: list[str]) -> list[str]:
    """Files of the formats talkmill reads, outside the watcher's own folders."""
    return [key for key in keys if not key.startswith(FOLDERS) and is_readable(key)]


def claim_key(key: str, sha256: str) -> str:
    return f"claims/{key}.{sha256[:16]}"


def moved_key(folder: str, key: str, sha256: str) -> str:
    return f"{folder}/{sha256[:16]}/{key}"


def outcome(state_type: str | None) -> str | None:
    """Where a processing file goes once its run is in this state; None while the run is not over."""
    if state_type == "COMPLETED":
        return "processed"
    return "failed" if state_type in FAILED_STATES else None


def is_stale(claim: bytes, stale_after: float, now: float) -> bool:
    try:
        return now - float(json.loads(claim)["claimed_at"]) > stale_after
    except (ValueError, KeyError, TypeError):
        return False  # unreadable: not ours to judge


# -- I/O: claim, move, start, settle ---------------------------------------------------------------------


@task(cache_policy=NO_CACHE, task_run_name="start-{key}")
def start(store: ObjectStore, key: str, runs: RunTarget, stale_after: float) -> str | None:
    """Claim the file, move it to processing/, start its run; None when another watcher has it."""
    sha256 = content_sha256(store, key)
    if sha256 is None:
        return None  # moved away since the listing
    marker = json.dumps({"claimed_at": time.time(), "by": flow_run.get_id()}).encode()
    claim = claim_key(key, sha256)
    if not store.put_if_absent(claim, marker, "application/json"):
        if not is_stale(_read(store, claim) or b"", stale_after, time.time()):
            return None
        print(f"{key}: taking over a stale claim")
    target = moved_key("processing", key, sha256)
    try:
        store.move(key, target)
    except ObjectNotFound:
        return None  # a watcher taking over the same stale claim moved it first
    run = runs.run_for(store.uri(target))
    print(f"{key}: started flow run {run.name} ({run.id})")
    return key


@task(cache_policy=NO_CACHE, task_run_name="settle-{key}")
def settle(store: ObjectStore, key: str, runs: RunTarget) -> str | None:
    """Move a processing/ file on once its run has ended; None while it runs."""
    run = runs.run_for(store.uri(key))  # the existing run (or, after a crash before the start, a new one)
    state = run.state.type.value if run.state else None
    folder = outcome(state)
    if folder is None:
        return None
    _, sha16, name = key.split("/", 2)
    target = f"{folder}/{sha16}/{name}"
    if folder == "failed":
        reason = f"flow run {run.name} ({run.id}) ended {run.state.name}: {run.state.message or ''}\n"
        store.put_bytes(f"{target}.reason.txt", reason.encode(), "text/plain")
    try:
        store.move(key, target)
    except ObjectNotFound:
        return None  # another watcher settled it
    print(f"{name}: {folder} (flow run {run.name} {run.state.name})")
    return target


def content_sha256(store: ObjectStore, key: str) -> str | None:
    """The object's sha256: from the store's metadata when it has it, else by reading the (small) file."""
    info = store.head(key)
    if info is None:
        return None
    if info.sha256:
        return info.sha256
    data = _read(store, key)
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _read(store: ObjectStore, key: str) -> bytes | None:
    try:
        return store.get_bytes(key)
    except ObjectNotFound:
        return None


if __name__ == "__main__":
    import sys

    print(bucket_watch(sys.argv[1] if len(sys.argv) > 1 else "inbox"))
