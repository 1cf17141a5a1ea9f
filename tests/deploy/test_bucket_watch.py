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

from flows.bucket_watch import (
    claim_key,
    ignored_reason,
    is_stale,
    new_files,
    outcome,
    prune_empty_folders,
    unreadable_files,
)
from talkmill.content.formats import SUFFIXES
from tests.deploy.conftest import INBOX, WATCH_INTERVAL, Service
from tests.deploy.prefect_server import api, flow_runs, stop, wait_final, wait_for

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


def read(service: Service, key: str) -> str:
    return service.s3.client().get_object(Bucket=BUCKET, Key=PREFIX + key)["Body"].read().decode()


@pytest.fixture(scope="module")
def drops(service: Service) -> dict[str, Any]:
    """Files put into the watched inbox at once (their runs overlap): a good one, one a dead watcher had
    claimed, one whose run fails."""
    orphan_text = "# Orphan\n\nA watcher died holding this file.\n"
    orphan = f"orphan-{uuid.uuid4().hex[:8]}.md"
    claim = {"claimed_at": time.time() - 3600, "by": "a watcher that died"}  # its claim, older than stale_after
    put(service, claim_key(orphan, hashlib.sha256(orphan_text.encode()).hexdigest()), json.dumps(claim))
    put(service, orphan, orphan_text)
    unknown = f"slides-{uuid.uuid4().hex[:8]}.xyz"
    put(service, unknown, "not a format talkmill reads")
    return {"good": drop(service, GOOD), "orphan": orphan, "empty": drop(service, "   \n", stem="empty"),
            "unknown": unknown, "dropped_at": time.monotonic()}


GOOD = "# Drop\n\nA file in the bucket. It becomes a video.\n"


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


def test_serve_watches_with_one_long_running_flow_run(dropped: dict[str, Any], service: Service) -> None:
    """A flow run per tick flooded the Runs page (~120 an hour): serve starts one watcher, which stays."""
    watchers = flow_runs(service.prefect, "bucket_watch/bucket-watch")
    assert [run["state_type"] for run in watchers] == ["RUNNING"], watchers
    assert watchers[0]["parameters"]["interval"] == WATCH_INTERVAL


def test_a_stale_claim_of_a_dead_watcher_is_taken_over_once(service: Service, drops: dict[str, Any]) -> None:
    """A watcher killed after its claim, before moving the file: another takes the file over."""
    wait_moved(service, drops["orphan"], "processed/")
    assert len(runs_for(service, drops["orphan"])) == 1


def test_a_failing_file_moves_to_failed_with_its_reason(service: Service, drops: dict[str, Any]) -> None:
    moved = wait_moved(service, drops["empty"], "failed/")
    reason = read(service, f"{moved}.reason.txt")
    assert "Failed" in reason and drops["empty"] not in keys(service)
    assert reason.startswith(drops["empty"]) and f"{INBOX}{moved}" in reason and "processing/" not in reason


def test_an_unknown_kind_goes_to_ignored_naming_the_accepted_kinds(service: Service, drops: dict[str, Any]) -> None:
    moved = wait_moved(service, drops["unknown"], "ignored/")
    reason = read(service, f"{moved}.reason.txt")
    assert reason.startswith(drops["unknown"]) and all(suffix in reason for suffix in SUFFIXES)
    assert drops["unknown"] not in keys(service)


def test_nothing_is_left_in_processing_or_claims(service: Service, drops: dict[str, Any],
                                                 dropped: dict[str, Any]) -> None:
    for name, folder in ((drops["good"], "processed/"), (drops["orphan"], "processed/"), (drops["empty"], "failed/")):
        wait_moved(service, name, folder)
    names = (drops["good"], drops["orphan"], drops["empty"])
    left = lambda: [k for k in keys(service) if k.startswith(("processing/", "claims/")) and k.split("/")[-1].startswith(names)]  # noqa: E731
    wait_for(lambda: not left(), 2 * WATCH_INTERVAL + 10, "claims and processing files cleaned up")


def test_an_unchanged_redrop_goes_straight_to_processed_with_a_note(service: Service,
                                                                   dropped: dict[str, Any]) -> None:
    name = dropped["name"]
    wait_moved(service, name, "processed/")
    put(service, name, GOOD)
    began = time.monotonic()
    note = wait_moved(service, f"{name}.note.txt", "processed/")
    assert time.monotonic() - began < 2 * WATCH_INTERVAL + 15
    assert read(service, note).startswith(name) and "no new run" in read(service, note)
    assert name not in keys(service) and len(runs_for(service, name)) == 1


def test_one_watcher_flow_run_watches_a_local_inbox(service: Service, tmp_path: Any) -> None:
    """`interval`: one long-running flow run looks every few seconds; it logs what it finds, not each look."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    code = ("import sys\nfrom flows.bucket_watch import bucket_watch\n"
            "bucket_watch(sys.argv[1], output=sys.argv[2], config=sys.argv[3], interval=1)\n")
    args = [str(inbox), str(service.output), str(service.config)]
    log = tmp_path / "watcher.log"
    with log.open("wb") as out:
        watcher = subprocess.Popen([sys.executable, "-c", code, *args], env=service.env(), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        name = f"local-{uuid.uuid4().hex[:8]}.md"
        (tmp_path / name).write_text("# Local\n\nA file in a local inbox.\n")
        (tmp_path / name).rename(inbox / name)  # whole, as the docstring asks
        wait_for(lambda: list(inbox.glob(f"processed/*/{name}")), SETTLE + 120, f"{name} processed (log: {log})")
        watchers = [run for run in watcher_runs(service) if run["parameters"]["inbox"] == str(inbox)]
        assert len(watchers) == 1 and watchers[0]["state_type"] == "RUNNING"
        assert not (inbox / "processing").exists() and not (inbox / "claims").exists()
        assert len(run_logs(service, watchers[0]["id"])) <= 4, run_logs(service, watchers[0]["id"])
    finally:
        stop(watcher)


def watcher_runs(service: Service) -> list[dict[str, Any]]:
    return api(service.prefect, "POST", "/flow_runs/filter", flows={"name": {"any_": ["bucket_watch"]}}, limit=200)


def run_logs(service: Service, flow_run_id: str) -> list[str]:
    found = api(service.prefect, "POST", "/logs/filter", logs={"flow_run_id": {"any_": [flow_run_id]}}, limit=200)
    return [entry["message"] for entry in found]


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
    listing = ["a.md", "b.HTML", "c.csv", "d.txt", "e.xyz", "sub/f.md", "claims/a.md.0123", "processing/x/a.md",
               "processed/x/b.md", "failed/x/c.md", "failed/x/c.md.reason.txt"]
    assert new_files(listing) == ["a.md", "b.HTML", "c.csv", "d.txt", "sub/f.md"]


def test_files_of_unknown_kinds_are_answered_with_the_registry_s_suffixes() -> None:
    assert unreadable_files(["a.md", "b.xyz", "noext", "ignored/x/c.xyz", "claims/a.md.0123"]) == ["b.xyz", "noext"]
    reason = ignored_reason("deck.xyz")
    assert reason.startswith("deck.xyz: ") and ".xyz" in reason and all(suffix in reason for suffix in SUFFIXES)


def test_empty_folders_are_pruned_up_to_the_root(tmp_path: Any) -> None:
    (tmp_path / "processing" / "abc").mkdir(parents=True)
    (tmp_path / "claims" / "sub").mkdir(parents=True)
    (tmp_path / "claims" / "kept.md.0123").write_text("{}")
    prune_empty_folders(tmp_path, "processing/abc/a.md")
    prune_empty_folders(tmp_path, "claims/sub/b.md.0123")
    assert not (tmp_path / "processing").exists() and sorted(p.name for p in tmp_path.rglob("*")) == ["claims", "kept.md.0123"]


def test_run_states_decide_where_a_file_goes() -> None:
    assert outcome("COMPLETED") == "processed"
    assert [outcome(state) for state in ("FAILED", "CRASHED", "CANCELLED")] == ["failed"] * 3
    assert [outcome(state) for state in ("SCHEDULED", "PENDING", "RUNNING", None)] == [None] * 4


def test_claims_are_stale_only_when_old_and_readable() -> None:
    marker = json.dumps({"claimed_at": 1000.0}).encode()
    assert is_stale(marker, 300, now=1301.0) and not is_stale(marker, 300, now=1299.0)
    assert not is_stale(b"garbage", 300, now=1e12)
