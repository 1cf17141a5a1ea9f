"""The bucket watcher: a file dropped into the SeaweedFS inbox becomes one content_to_video run, its videos
and manifest, and moves to processed/ (or failed/ with a reason), however many watchers look at once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from flows.bucket_watch import claim_key, is_stale, new_files, outcome
from tests.deploy.conftest import INBOX, WATCH_INTERVAL, Service
from tests.deploy.prefect_server import flow_runs, wait_final, wait_for

DEPLOYMENT = "content_to_video/content-to-video"
BUCKET, PREFIX = "inbox", "drop/"
SETTLE = 4 * WATCH_INTERVAL + 30  # a tick to start, the run, a tick to settle, process start-ups


def drop(service: Service, text: str, stem: str = "note") -> str:
    """A Markdown file put into the inbox; its name."""
    name = f"{stem}-{uuid.uuid4().hex[:8]}.md"
    put(service, name, text)
    return name


def put(service: Service, key: str, text: str) -> None:
    service.s3.client().put_object(Bucket=BUCKET, Key=PREFIX + key, Body=text.encode())


def keys(service: Service) -> list[str]:
    listing = service.s3.client().list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    return [item["Key"].removeprefix(PREFIX) for item in listing.get("Contents", [])]


def runs_for(service: Service, name: str) -> list[dict[str, Any]]:
    """content_to_video runs whose source is this inbox file (wherever the watcher moved it)."""
    return [run for run in flow_runs(service.prefect, DEPLOYMENT)
            if any(source.endswith("/" + name) for source in run["parameters"].get("sources", []))]


def wait_moved(service: Service, name: str, folder: str) -> str:
    found = lambda: next((key for key in keys(service) if key.startswith(folder) and key.endswith("/" + name)), None)  # noqa: E731
    return wait_for(found, SETTLE, f"{name} in {folder}", interval=1)


@pytest.fixture(scope="module")
def drops(service: Service) -> dict[str, Any]:
    """Files put into the watched inbox at once (their runs overlap): a good one, one a dead watcher had
    claimed, one whose run fails."""
    orphan_text = "# Orphan\n\nA watcher died holding this file.\n"
    orphan = f"orphan-{uuid.uuid4().hex[:8]}.md"
    claim = {"claimed_at": time.time() - 3600, "by": "a watcher that died"}  # its claim, older than stale_after
    put(service, claim_key(orphan, hashlib.sha256(orphan_text.encode()).hexdigest()), json.dumps(claim))
    put(service, orphan, orphan_text)
    return {"good": drop(service, "# Drop\n\nA file in the bucket. It becomes a video.\n"), "orphan": orphan,
            "empty": drop(service, "   \n", stem="empty"), "dropped_at": time.monotonic()}


@pytest.fixture(scope="module")
def dropped(service: Service, drops: dict[str, Any]) -> dict[str, Any]:
    """The good file's one run, awaited to its end."""
    name = drops["good"]
    run = wait_for(lambda: (runs_for(service, name) or [None])[0], 3 * WATCH_INTERVAL + 30, f"a run for {name}")
    started_after = time.monotonic() - drops["dropped_at"]
    return {"name": name, "run": wait_final(service.prefect, run["id"], 180), "started_after": started_after}


def test_a_dropped_file_starts_a_run_within_bounded_time(dropped: dict[str, Any]) -> None:
    assert dropped["started_after"] < 3 * WATCH_INTERVAL + 30
    assert dropped["run"]["parameters"]["sources"][0].startswith(f"{INBOX}processing/")


def test_the_run_writes_videos_and_a_manifest(dropped: dict[str, Any], service: Service) -> None:
    assert dropped["run"]["state_type"] == "COMPLETED", dropped["run"]["state"]
    run_dirs = list((service.output / "runs").glob(f"*-{dropped['run']['id'][:8]}"))
    assert len(run_dirs) == 1
    rows = [json.loads(line) for line in (run_dirs[0] / "manifest.jsonl").read_text().splitlines()]
    assert [row["status"] for row in rows] == ["done"]
    assert rows[0]["source_uri"].endswith("/" + dropped["name"])
    assert (service.output / rows[0]["video_key"]).stat().st_size == rows[0]["size_bytes"] > 10_000


def test_the_file_moves_to_processed_and_leaves_the_inbox(dropped: dict[str, Any], service: Service) -> None:
    wait_moved(service, dropped["name"], "processed/")
    assert dropped["name"] not in keys(service)
    assert not [key for key in keys(service) if key.startswith("processing/") and key.endswith(dropped["name"])]
    assert len(runs_for(service, dropped["name"])) == 1


def test_a_stale_claim_of_a_dead_watcher_is_taken_over_once(service: Service, drops: dict[str, Any]) -> None:
    """A watcher killed after its claim, before moving the file: another takes the file over."""
    wait_moved(service, drops["orphan"], "processed/")
    assert len(runs_for(service, drops["orphan"])) == 1


def test_a_failing_file_moves_to_failed_with_its_reason(service: Service, drops: dict[str, Any]) -> None:
    moved = wait_moved(service, drops["empty"], "failed/")
    reason = service.s3.client().get_object(Bucket=BUCKET, Key=f"{PREFIX}{moved}.reason.txt")["Body"].read()
    assert b"Failed" in reason and drops["empty"] not in keys(service)


def test_two_watchers_at_once_start_one_run(service: Service) -> None:
    """Two watchers of an inbox that `talkmill serve` does not watch, released at the same instant."""
    inbox = "s3://inbox/second/"
    name = f"twice-{uuid.uuid4().hex[:8]}.md"
    service.s3.client().put_object(Bucket=BUCKET, Key=f"second/{name}", Body=b"# Twice\n\nTwo watchers. One run.\n")
    results = run_watchers(service, inbox, count=2)
    assert sorted(len(result["started"]) for result in results) == [0, 1]
    assert len(runs_for(service, name)) == 1
    later_tick(service, inbox)  # a later tick (or a restarted watcher): still that one run
    assert len(runs_for(service, name)) == 1


def later_tick(service: Service, inbox: str) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.bucket_watch import bucket_watch

    with temporary_settings(updates={PREFECT_API_URL: service.prefect.api_url}), pytest.MonkeyPatch.context() as env:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            env.setenv(key, service.env()[key])
        bucket_watch(inbox, output=str(service.output), config=str(service.config))


def run_watchers(service: Service, inbox: str, count: int) -> list[dict[str, Any]]:
    """`count` bucket_watch flows in their own processes, released at the same instant."""
    start_at = time.time() + 10  # after both have imported Prefect
    code = ("import json, sys, time\nfrom flows.bucket_watch import bucket_watch\n"
            "time.sleep(max(0, float(sys.argv[1]) - time.time()))\n"
            "print(json.dumps(bucket_watch(sys.argv[2], output=sys.argv[3], config=sys.argv[4])))\n")
    args = [str(start_at), inbox, str(service.output), str(service.config)]
    processes = [subprocess.Popen([sys.executable, "-c", code, *args], env=service.env(), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(count)]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


# -- the watcher's decisions, without servers -------------------------------------------------------------


def test_only_readable_files_outside_the_watchers_folders_are_new() -> None:
    listing = ["a.md", "b.HTML", "c.csv", "d.txt", "e.pdf", "sub/f.md", "claims/a.md.0123", "processing/x/a.md",
               "processed/x/b.md", "failed/x/c.md", "failed/x/c.md.reason.txt"]
    assert new_files(listing) == ["a.md", "b.HTML", "c.csv", "d.txt", "sub/f.md"]


def test_run_states_decide_where_a_file_goes() -> None:
    assert outcome("COMPLETED") == "processed"
    assert [outcome(state) for state in ("FAILED", "CRASHED", "CANCELLED")] == ["failed"] * 3
    assert [outcome(state) for state in ("SCHEDULED", "PENDING", "RUNNING", None)] == [None] * 4


def test_claims_are_stale_only_when_old_and_readable() -> None:
    marker = json.dumps({"claimed_at": 1000.0}).encode()
    assert is_stale(marker, 300, now=1301.0) and not is_stale(marker, 300, now=1299.0)
    assert not is_stale(b"garbage", 300, now=1e12)
