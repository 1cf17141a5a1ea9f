"""Pipeline overhead: N scripts through the content_to_video flow vs a plain asyncio + httpx loop.

Both drive the same fake Talks server (answers at once, renders each talk in a fixed latency, in its own
process) at the same concurrency and polling schedule, and both copy each result into a local folder.
Prints both wall times, their ratio, the per-script overhead, CPU per script (this process and its
children but the fake server: Prefect's temporary API server counts), the mean number of busy slots, peak
RSS, and Prefect's start-up (its temporary API server) apart. v1 target: ratio <= 1.10; issue 10: the flow's
CPU per script within 2x the plain loop's.

The default render latency, 2 s, is short of a real talk (the engine renders a 10 s talk in ~5 s) while
leaving the overhead visible; --latency 0.5 magnifies it (Prefect spends ~7 ms of event-loop time per
task run, and ~1 s once per run).

    .venv/bin/python -m bench.pipeline_overhead [--scripts 200] [--latency 2] [--concurrency 8]
    .venv/bin/python -m bench.pipeline_overhead --scripts 1000 --latency 1 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import peak_rss_mb, quiet_prefect_env, start_prefect_api, write_rows_csv
from bench.fake_talks import serve
from flows.server_settings import batch_task_run_recording

POLL = 0.05  # seconds, both sides
PRESENTER = "https://presenters.example/portrait.jpg"  # a URL: passed through, never fetched by the fake


def write_content(folder: Path, count: int) -> Path:
    text = "Script number {i}: a short line for the overhead benchmark."
    return write_rows_csv(folder / "rows.csv", count, text)


def write_config(folder: Path, url: str, concurrency: int) -> Path:
    path = folder / "config.yaml"
    path.write_text(
        f"presenter: {PRESENTER}\n"
        f"backend:\n  url: {url}\n  concurrency: {concurrency}\n  wait: poll\n"
        f"  poll_interval: {POLL}\n  poll_max_interval: {POLL}\n"
    )
    return path


async def plain_loop(url: str, count: int, concurrency: int, out: Path) -> None:
    """What the flow does, without Prefect: create, poll, copy the result, under a semaphore."""
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(i: int) -> None:
            async with slots:
                body = {"source_url": PRESENTER, "script": {"type": "text", "input": f"Script {i}."},
                        "user_data": f"s{i}"}
                talk_id = (await client.post("/talks", json=body)).json()["id"]
                while (talk := (await client.get(f"/talks/{talk_id}")).json())["status"] != "done":
                    await asyncio.sleep(POLL)
            (out / f"{i:04d}.mp4").write_bytes((await client.get(talk["result_url"])).content)

        await asyncio.gather(*(one(i) for i in range(count)))


def tree_cpu_seconds(exclude: int) -> float:
    """CPU seconds (user + system) of this process and its live descendants, except the `exclude` subtree
    (the fake server), read from /proc: Prefect's temporary API server is a child that outlives the run."""
    parents, cpu = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        pid = int(stat.parent.name)
        parents[pid], cpu[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    def counted(pid: int) -> bool:
        while pid not in (0, exclude):
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 0)
        return False
    return sum(ticks for pid, ticks in cpu.items() if counted(pid)) / os.sysconf("SC_CLK_TCK")


def stats(url: str) -> dict:
    return httpx.get(f"{url}/stats").json()


def main() -> None:
    quiet_prefect_env()
    batch_task_run_recording()  # as `python -m flows.content_to_video` does for its temporary API
    parser = argparse.ArgumentParser()
    parser.add_argument("--scripts", type=int, default=200)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    url, server = serve(args.latency)
    from flows.content_to_video import content_to_video

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        startup = start_prefect_api()
        (folder / "plain").mkdir()
        began, cpu = time.perf_counter(), tree_cpu_seconds(server.pid)
        asyncio.run(plain_loop(url, args.scripts, args.concurrency, folder / "plain"))
        plain, plain_cpu = time.perf_counter() - began, tree_cpu_seconds(server.pid) - cpu
        plain_busy = stats(url)["mean_busy_slots"]
        httpx.post(f"{url}/reset")
        content, config = write_content(folder, args.scripts), write_config(folder, url, args.concurrency)
        began, cpu = time.perf_counter(), tree_cpu_seconds(server.pid)
        summary = asyncio.run(content_to_video([str(content)], config=str(config), output=str(folder / "flow")))
        flowed, flow_cpu = time.perf_counter() - began, tree_cpu_seconds(server.pid) - cpu
        flow_busy = stats(url)["mean_busy_slots"]
    server.terminate()
    ideal = args.scripts / args.concurrency * args.latency
    print(f"{args.scripts} scripts, render latency {args.latency} s, concurrency {args.concurrency} "
          f"(ideal wall {ideal:.1f} s)")
    print(f"prefect start-up (apart):   {startup:.2f} s")
    print(f"plain asyncio + httpx:      {plain:.2f} s   mean busy slots {plain_busy:.2f}")
    print(f"content_to_video flow:      {flowed:.2f} s   mean busy slots {flow_busy:.2f}   {summary.counts}")
    print(f"ratio flow / plain:         {flowed / plain:.3f}   (target <= 1.10)")
    print(f"overhead per script:        {(flowed - plain) / args.scripts * 1000:.1f} ms")
    print(f"CPU per script:             flow {flow_cpu / args.scripts * 1000:.1f} ms, plain "
          f"{plain_cpu / args.scripts * 1000:.1f} ms (target: flow <= 2x plain)")
    print(f"peak RSS:                   {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
