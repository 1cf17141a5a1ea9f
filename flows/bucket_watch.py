"""bucket_watch: every file dropped into an inbox (s3://bucket/inbox/ or a local folder) gets an answer: ONE
content_to_video deployment run and then processed/ or failed/, or ignored/ when talkmill cannot read it,
however many watchers run at once and however often one is restarted.

    each look: resume crashed runs → settle files whose runs ended → answer each new file

One flow run watches for as long as it runs (`interval`: seconds between looks), logging only what it
finds; without `interval` it looks once and ends (for a schedule, or a test).

Layout, all inside the inbox (one store, one listing; users drop files at the top):

    <name>                                 a dropped file, anywhere outside the folders below
    claims/<name>.<sha16>                  create-only marker (S3: If-None-Match: *): the watcher that wrote it
                                           handles the file; the other watchers leave it alone
    processing/<sha16>/<name>              the run's source while it runs (a stable URI the run can read)
    processed/<sha16>/<name>               its run completed (+ .note.txt for an unchanged re-drop)
    failed/<sha16>/<name> (+ .reason.txt)  its run failed, crashed or was cancelled; the reason beside it
    ignored/<sha16>/<name> (+ .reason.txt) not a kind talkmill reads (talkmill.content.formats)

Decisions:
- The claim names the file by its CONTENT (sha256), not its name: a file dropped again unchanged is the
  same work, and its videos exist already; changed content is new work under the same name.
- Claim, then move to processing/, then start the run: the run never reads a file that is still moving.
  The run is created with an idempotency key derived from its source URI, so starting it again (a
  watcher that died after the move, a later look settling it, an unchanged re-drop) returns the same run,
  never a second one. An unchanged re-drop therefore finds its ended run at once and goes straight to
  processed/ (or failed/) with a note saying so.
- Once a file is settled its claim is deleted (the idempotency key, not the claim, keeps a re-drop to the
  same run), and a local inbox loses its empty processing/ and claims/ folders.
- A watcher that dies between its claim and the move leaves a claim and a file in the inbox: once the
  claim is older than `stale_after` seconds another watcher takes the file over (the idempotency key still
  guarantees one run).
- Watchers never wait for runs: each look settles processing/ files whose runs have ended. S3 has no rename
  (move = copy + delete): a crash between the two leaves a copy that the next look settles or ignores.
- Files appear only whole on S3; in a local inbox, write elsewhere and `mv` the file in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from connectors.storage import ObjectStore, open_store
from connectors.storage.local import LocalStore
from talkmill.config import S3Config, load_config
from talkmill.content.formats import SUFFIXES, is_readable, suffix_of
from talkmill.errors import ObjectNotFound, TalkmillError

DEPLOYMENT = "content_to_video/content-to-video"
FOLDERS = ("claims/", "processing/", "processed/", "failed/", "ignored/")
FAILED_STATES = ("FAILED", "CRASHED", "CANCELLED")


@flow(name="bucket_watch")
def bucket_watch(
    inbox: str,
    output: str | None = None,
    config: str | None = None,
    talks_url: str | None = None,
    deployment: str = DEPLOYMENT,
    s3_endpoint_url: str | None = None,
    stale_after: float = 300,
    interval: float | None = None,
    resume_crashed: bool = True,
) -> dict[str, list[str]]:
    """Start one content_to_video run per new file in the inbox; move files along as their runs end.

    Args:
        inbox: The inbox: a local folder, or s3://bucket/prefix/ (its subfolders claims/, processing/,
            processed/, failed/ and ignored/ are the watcher's own).
        output: Where the runs write videos and manifests; unset: the config's output.
        config: A YAML pipeline config for the runs; its s3 section (endpoint, region) also serves the inbox.
        talks_url: The Talks API the runs use (a worker without an engine needs one); unset: the deployment's.
        deployment: The content_to_video deployment to run, as "<flow>/<deployment>".
        s3_endpoint_url: The inbox's S3 endpoint when the config has none (SeaweedFS, MinIO, R2).
        stale_after: Seconds after which a claim whose file is still in the inbox is taken over.
        interval: Seconds between two looks, in this one flow run, until it is cancelled; unset: one look.
        resume_crashed: Re-run the deployment's crashed flow runs once each (flows/resume.py) at every look.
    """
    store = open_store(inbox, inbox_s3(config, s3_endpoint_url), option="inbox")
    runs = RunTarget(deployment, {"output": output, "config": config, "talks_url": talks_url})
    watcher = Watcher(store, runs, stale_after, get_run_logger())
    if interval is None:
        return watcher.look(resume_crashed)
    watcher.log.info("watching %s every %g s", inbox, interval)
    while True:  # until the flow run is cancelled; each look logs what it finds, nothing when idle
        watcher.look(resume_crashed, keep_going=True)
        time.sleep(interval)


class RunTarget:
    """The content_to_video deployment and the parameters every run from this inbox shares."""

    def __init__(self, deployment: str, shared: dict[str, Any]) -> None:
        self.deployment = deployment
        self.shared = {name: value for name, value in shared.items() if value is not None}  # unset: the deployment's

    def run_for(self, source: str) -> Any:
        """The run reading `source`: created the first time, the same run every later time."""
        return run_deployment(
            self.deployment, parameters={"sources": [source], **self.shared},
            timeout=0, idempotency_key=f"bucket-watch:{source}", as_subflow=False, tags=["bucket-watch"],
        )  # fmt: skip


def inbox_s3(config: str | None, endpoint_url: str | None) -> S3Config:
    """The config's S3 settings (endpoint and region), the endpoint argument winning when given."""
    settings = load_config(Path(config)).s3 if config else S3Config()
    return settings.model_copy(update={"endpoint_url": endpoint_url}) if endpoint_url else settings


# -- pure: names and decisions ---------------------------------------------------------------------------


def dropped_files(keys: list[str]) -> list[str]:
    """Every file outside the watcher's own folders."""
    return [key for key in keys if not key.startswith(FOLDERS)]


def new_files(keys: list[str]) -> list[str]:
    """Dropped files of the formats talkmill reads."""
    return [key for key in dropped_files(keys) if is_readable(key)]


def unreadable_files(keys: list[str]) -> list[str]:
    """Dropped files of no format talkmill reads: they go to ignored/."""
    return [key for key in dropped_files(keys) if not is_readable(key)]


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


def ignored_reason(name: str) -> str:
    suffix = suffix_of(name) or "no suffix"
    return (f"{name}: not a kind talkmill reads ({suffix}); accepted: {', '.join(SUFFIXES)}. "
            "Give it one of these suffixes and drop it again.\n")


def failed_reason(name: str, where: str, run: Any, message: str) -> str:
    return f"{name} (now {where}): flow run {run.name} ({run.id}) ended {run.state.name}: {message}\n"


# -- I/O: one look at the inbox --------------------------------------------------------------------------


class Watcher:
    """One watcher's looks at the inbox; it remembers what it has reported, so a file that waits (another
    watcher's claim, the same content still processing) is logged once, not at every look."""

    def __init__(self, store: ObjectStore, runs: RunTarget, stale_after: float, log: logging.Logger | Any) -> None:
        self.store, self.runs, self.stale_after, self.log = store, runs, stale_after, log
        self.reported: set[tuple[str, str]] = set()  # (key, sha256) of files waiting

    def look(self, resume_crashed: bool = True, keep_going: bool = False) -> dict[str, list[str]]:
        """One look; with `keep_going` (a long-running watcher), trouble reaching the store or Prefect's
        API is logged and the next look tries again, instead of ending the watch."""
        try:
            return self._look(resume_crashed)
        except (TalkmillError, OSError, httpx.HTTPError) as error:
            if not keep_going:
                raise
            self.log.warning("this look at the inbox failed (the next one tries again): %s", error)
            return {}

    def _look(self, resume_crashed: bool) -> dict[str, list[str]]:
        resumed = self._resume() if resume_crashed else []
        keys = self.store.list()
        settled = [self.settle(key) for key in keys if key.startswith("processing/")]
        ignored = [self.ignore(key) for key in unreadable_files(keys)]
        started = [self.start(key) for key in new_files(keys)]
        return {"started": [k for k in started if k], "settled": [k for k in settled if k],
                "ignored": [k for k in ignored if k], "resumed": resumed}

    def _resume(self) -> list[str]:
        from flows.resume import resume_crashed

        return resume_crashed(self.runs.deployment, self.log)

    def start(self, key: str) -> str | None:
        """Claim the file, move it to processing/, start its run; None when another watcher has it."""
        sha256 = content_sha256(self.store, key)
        if sha256 is None:
            return None  # moved away since the listing
        marker = json.dumps({"claimed_at": time.time(), "by": flow_run.get_id()}).encode()
        claim = claim_key(key, sha256)
        if not self.store.put_if_absent(claim, marker, "application/json"):
            if not is_stale(_read(self.store, claim) or b"", self.stale_after, time.time()):
                self._waiting(key, sha256)
                return None
            self.log.info("%s: taking over a stale claim", key)
        target = moved_key("processing", key, sha256)
        try:
            self.store.move(key, target)
        except ObjectNotFound:
            return None  # a watcher taking over the same stale claim moved it first
        run = self.runs.run_for(self.store.uri(target))
        if outcome(_state_type(run)):  # an unchanged re-drop: its run ended long ago
            self.settle(target, redrop=True)
        else:
            self.log.info("%s: started flow run %s (%s)", key, run.name, run.id)
        return key

    def _waiting(self, key: str, sha256: str) -> None:
        if (key, sha256) in self.reported:
            return
        self.reported.add((key, sha256))
        if self.store.exists(moved_key("processing", key, sha256)):
            self.log.info("%s: the same content is being processed; it follows once that run ends", key)
        else:
            self.log.info("%s: claimed by another watcher; taken over if still here after %g s",
                          key, self.stale_after)

    def settle(self, key: str, redrop: bool = False) -> str | None:
        """Move a processing/ file on once its run has ended; None while it runs."""
        run = self.runs.run_for(self.store.uri(key))  # the existing run (or, after a crash before the start, a new one)
        folder = outcome(_state_type(run))
        if folder is None:
            return None
        _, sha16, name = key.split("/", 2)
        target = f"{folder}/{sha16}/{name}"
        self._explain(key, target, run, redrop)
        try:
            self.store.move(key, target)
        except ObjectNotFound:
            return None  # another watcher settled it
        self._clean_up(key, f"claims/{name}.{sha16}")
        again = " (an unchanged re-drop: no new run)" if redrop else ""
        self.log.info("%s: %s/ after flow run %s ended %s%s", name, folder, run.name, run.state.name, again)
        return target

    def _explain(self, key: str, target: str, run: Any, redrop: bool) -> None:
        """The reason (failed/) or note (a re-drop) beside the file, naming it where it now lies."""
        name = key.split("/", 2)[2]
        where = self.store.uri(target)
        earlier = ("the same content as an earlier drop: " if redrop else "")
        if target.startswith("failed/"):
            message = (run.state.message or "").replace(self.store.uri(key), where).replace(key, target)
            text = failed_reason(name, where, run, earlier + message)
            self.store.put_bytes(f"{target}.reason.txt", text.encode(), "text/plain")
        elif redrop:
            text = (f"{name} (now {where}): unchanged since an earlier drop, whose flow run {run.name} ({run.id}) "
                    f"completed; no new run: its videos are in that run's output.\n")
            self.store.put_bytes(f"{target}.note.txt", text.encode(), "text/plain")

    def ignore(self, key: str) -> str | None:
        """Move a file talkmill cannot read to ignored/, its reason beside it."""
        sha256 = content_sha256(self.store, key)
        if sha256 is None:
            return None
        target = moved_key("ignored", key, sha256)
        self.store.put_bytes(f"{target}.reason.txt", ignored_reason(key).encode(), "text/plain")
        try:
            self.store.move(key, target)
        except ObjectNotFound:
            return None  # another watcher moved it
        self.log.info("%s: ignored/ (not a kind talkmill reads)", key)
        return target

    def _clean_up(self, processing_key: str, claim: str) -> None:
        self.store.delete(claim)
        if isinstance(self.store, LocalStore):  # S3 has no folders to leave behind
            for key in (processing_key, claim):
                prune_empty_folders(self.store.root, key)


def prune_empty_folders(root: Path, key: str) -> None:
    """Remove the key's parent folders that are now empty, up to (not including) the store's root."""
    folder = root.joinpath(*key.split("/")).parent
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): the folders above are not empty either
            return
        folder = folder.parent


def _state_type(run: Any) -> str | None:
    return run.state.type.value if run.state else None


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
