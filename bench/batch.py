"""A batch through one engine: 8 one-minute text talks posted at once, as a pipeline run posts them.

Starts a real `talkmill-engine serve` on 127.0.0.1 for each worker count, serves the portrait from a
local HTTP server, posts every talk, and waits for all of them. Prints the wall time from the first POST
to the last `done`, talks per minute, and the engine's own processing_fps per talk. The question it
answers (issue 11): on 2 cores, do two workers beat one?

    .venv/bin/python -m bench.batch [--talks 8] [--seconds 60] [--workers 1 2] [--voice en-US-af_heart]
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from bench.common import PORTRAITS, text_of_seconds

KEY = "bench:batch-key"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--talks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--voice", default="en-US-af_heart")
    args = parser.parse_args()
    portrait = PORTRAITS["grace_hopper"]
    with _static(portrait.parent) as base:
        for workers in args.workers:
            wall, fps = run_batch(workers, args.talks, args.seconds, args.voice, f"{base}/{portrait.name}")
            print(f"workers {workers}: {args.talks} talks of {args.seconds:.0f} s in {wall:.1f} s wall, "
                  f"{60 * args.talks / wall:.2f} talks/min, processing_fps per talk median "
                  f"{statistics.median(fps):.1f} (min {min(fps):.1f}, max {max(fps):.1f})", flush=True)


def run_batch(
    workers: int, talks: int, seconds: float, voice: str, portrait_url: str
) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as tmp, _engine(Path(tmp), workers) as url:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        body = {"source_url": portrait_url, "config": {"stitch": False},
                "script": {"type": "text", "input": text_of_seconds(seconds),
                           "provider": {"type": "microsoft", "voice_id": voice}}}  # fmt: skip
        began = time.monotonic()
        ids = [client.post("/talks", json=body).raise_for_status().json()["id"] for _ in range(talks)]
        finished = [_wait(client, talk_id) for talk_id in ids]
        wall = time.monotonic() - began
        return wall, [talk["metadata"]["processing_fps"] for talk in finished]


def _wait(client: httpx.Client, talk_id: str, timeout: float = 3600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        talk = client.get(f"/talks/{talk_id}").raise_for_status().json()
        if talk["status"] == "done":
            return talk
        if talk["status"] in ("error", "rejected"):
            raise RuntimeError(f"talk {talk_id} ended {talk['status']}: {talk.get('error')}")
        time.sleep(0.5)
    raise TimeoutError(f"talk {talk_id} not done after {timeout} s")


class _engine:  # noqa: N801 (used as a context manager, like a function)
    def __init__(self, data_dir: Path, workers: int) -> None:
        self.data_dir, self.workers = data_dir, workers

    def __enter__(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "TALKMILL_ENGINE_KEYS": KEY,
               "TALKMILL_ENGINE_ALLOWED_INPUT_NETWORKS": "127.0.0.0/8"}  # the portrait is served here
        command = [sys.executable, "-m", "talkmill_engine", "serve", "--port", str(port), "--data-dir",
                   str(self.data_dir / "engine"), "--workers", str(self.workers), "--log-level", "warning"]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # /health answers 200 once the workers have loaded their models
            if self.process.poll() is not None:
                raise RuntimeError(f"the engine exited with {self.process.returncode}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the engine did not become ready in 180 s")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class _static:  # noqa: N801
    """`root` over HTTP on 127.0.0.1 while in use; the base URL."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's name)
        pass


if __name__ == "__main__":
    main()
