"""Test helpers for the engine: start a real engine process, serve files on loopback, make media."""

from __future__ import annotations

import io
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ENGINE_COMMAND = [sys.executable, "-m", "talkmill_engine"]
# the two public-domain portraits: the built-in default presenter and the example one
PORTRAITS = {"grace_hopper.jpg": ROOT / "talkmill" / "assets" / "grace_hopper.jpg",
             "astronaut.png": ROOT / "examples" / "presenters" / "astronaut.png"}
KEY = "tester:s3cret-key"
LOOPBACK = "127.0.0.0/8,::1/128"  # the URL policy's allowlist of tests that serve inputs and receive webhooks here
FINAL = ("done", "error", "rejected")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Engine:
    """An engine process started by `talkmill-engine serve`, in its own process group."""

    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen
    key: str = KEY
    started_in: float = 0.0

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signals the whole process group (server and workers), as a crash or an operator would."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log(self) -> str:
        path = self.data_dir.parent / f"{self.data_dir.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_engine(
    data_dir: Path, workers: int = 2, allow_private: bool = True, port: int | None = None,
    environ: dict[str, str] | None = None, **env: str,
) -> Engine:
    """Starts `talkmill-engine serve` and waits until /health answers (and the workers are up).
    `allow_private`: inputs and webhooks may reach loopback (the explicit allowlist), else public only.
    `environ`: more variables as they are; `env`: engine settings (TALKMILL_ENGINE_<NAME>)."""
    port = port or free_port()
    allowed = LOOPBACK if allow_private else ""
    environment = {
        **os.environ,
        "TALKMILL_ENGINE_KEYS": KEY,
        "TALKMILL_ENGINE_ALLOWED_INPUT_NETWORKS": allowed,
        "TALKMILL_ENGINE_ALLOWED_WEBHOOK_NETWORKS": allowed,
        "TALKMILL_ENGINE_WEBHOOK_SECRET": env.pop("webhook_secret", "whsec-test"),
        **{f"TALKMILL_ENGINE_{name.upper()}": str(value) for name, value in env.items()},
        **(environ or {}),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir.parent / f"{data_dir.name}.log", "ab")  # noqa: SIM115 (kept open by the child)
    command = [*ENGINE_COMMAND, "serve", "--port", str(port), "--data-dir", str(data_dir)]
    command += ["--workers", str(workers), "--log-level", "warning"]
    began = time.monotonic()
    process = subprocess.Popen(command, env=environment, stdout=log, stderr=log, start_new_session=True)
    engine = Engine(f"http://127.0.0.1:{port}", port, data_dir, process)
    wait_healthy(engine, workers)
    engine.started_in = time.monotonic() - began
    return engine


def start_s3_engine(data_dir: Path, s3: Any, results_s3_url: str) -> Engine:
    """One worker (the machine is shared) keeping results in `s3` (a tests.s3server.S3Server), served at
    presigned URLs, as a deployed engine keeps them."""
    return start_engine(data_dir, workers=1, environ=s3.credentials_env(), results_s3_url=results_s3_url,
                        s3_endpoint_url=s3.endpoint_url)


def wait_healthy(engine: Engine, workers: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            raise RuntimeError(f"engine exited with {engine.process.returncode}:\n{engine.log()}")
        try:
            health = httpx.get(f"{engine.url}/health", timeout=2).json()
            if health.get("workers") == workers:
                return health
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"engine not healthy after {timeout} s:\n{engine.log()}")


def wait_for(client: httpx.Client, talk_id: str, statuses: tuple[str, ...] = FINAL, timeout: float = 180) -> dict:
    """Polls GET /talks/{id} until its status is one of `statuses`; the talk."""
    deadline = time.monotonic() + timeout
    while True:
        talk = client.get(f"/talks/{talk_id}").json()
        if talk.get("status") in statuses:
            return talk
        if time.monotonic() > deadline:
            raise TimeoutError(f"talk {talk_id} still {talk.get('status')} after {timeout} s: {talk}")
        time.sleep(0.05)


# -- a static file server on loopback ---------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
        pass

    def do_GET(self) -> None:  # noqa: N802 (stdlib's name)
        # /slow/<seconds>/<file>: answers after a delay (keeps a talk `started` for a while)
        if self.path.startswith("/slow/"):
            _, _, seconds, rest = self.path.split("/", 3)
            time.sleep(float(seconds))
            self.path = "/" + rest
        super().do_GET()


@dataclass
class StaticServer:
    root: Path
    server: ThreadingHTTPServer

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def add(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return self.url(name)


def serve_directory(root: Path) -> StaticServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return StaticServer(root, server)


# -- media ------------------------------------------------------------------------------------------


def png_bytes(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A flat grey RGB PNG built by hand; `rows` overrides the (filter byte + pixels) scanlines."""
    if rows is None:
        rows = (b"\x00" + b"\x80" * (3 * width)) * height
    return _png_with(width, height, zlib.compress(rows, 9))


def bomb_png(side: int = 30_000) -> bytes:
    """A ~5 KB PNG whose header claims side x side pixels (900 M, 2.7 GB decoded): a decompression bomb.

    Only its first rows of zeros are in the file: the header alone must get it refused.
    """
    rows = b"\x00" * ((1 + 3 * side) * 200)
    return _png_with(side, side, zlib.compress(rows, 9))


def _png_with(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def speechlike_mp3(seconds: float = 1.6, rate: int = 22050) -> bytes:
    """An mp3 of a voiced tone whose loudness rises and falls 4 times a second, like syllables."""
    import av

    t = np.arange(int(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    samples = (0.4 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
        frame.rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


@dataclass
class VideoFacts:
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    frames: int
    video_seconds: float
    audio_seconds: float | None


def probe_video(data: bytes, fps: float = 25.0) -> VideoFacts:
    """Decodes every frame of a video file (a file that does not decode fails here)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = sum(1 for _ in container.decode(video=0))
        audio_seconds = None
        if audio is not None and audio.duration is not None:
            audio_seconds = float(audio.duration * audio.time_base)
        return VideoFacts(
            video.codec_context.name, audio.codec_context.name if audio else None,
            video.codec_context.width, video.codec_context.height, frames, frames / fps, audio_seconds,
        )


def wav_seconds(data: bytes) -> float:
    import wave

    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


def kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)



# -- a webhook receiver -----------------------------------------------------------------------------


class WebhookReceiver:
    """Records each POST it receives: (signature header, raw body). Answers 200."""

    def __init__(self, port: int = 0) -> None:
        self.calls: list[tuple[str | None, bytes]] = []
        self.arrived = threading.Event()
        calls, arrived = self.calls, self.arrived

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                calls.append((self.headers.get("Talks-Signature"), body))
                arrived.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhook"

    def wait(self, timeout: float = 60) -> tuple[str | None, bytes]:
        assert self.arrived.wait(timeout), "no webhook arrived"
        return self.calls[0]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
