"""One talk through the engine's own API, as any D-ID client would make it: upload, create, wait, download."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from talkmill.engine.local import LocalEngine


def render_one(image: Path, text: str, out: Path, timeout: float = 600) -> dict[str, Any]:
    with LocalEngine() as engine:
        headers = {"Authorization": f"Bearer {engine.key}"}
        with httpx.Client(base_url=engine.url, headers=headers, timeout=60) as client:
            with image.open("rb") as file:
                upload = _ok(client.post("/images", files={"image": (image.name, file)}))
            created = _ok(client.post("/talks", json={"source_url": upload["url"],
                                                       "script": {"type": "text", "input": text}}))
            talk = _wait(client, created["id"], timeout)
            out.parent.mkdir(parents=True, exist_ok=True)
            with client.stream("GET", talk["result_url"]) as response, out.open("wb") as file:
                for chunk in response.raise_for_status().iter_bytes():
                    file.write(chunk)
    return talk


def _wait(client: httpx.Client, talk_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (talk := _ok(client.get(f"/talks/{talk_id}")))["status"] not in ("done", "error"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"talk {talk_id} not done after {timeout:.0f} s")
        time.sleep(0.5)
    if talk["status"] == "error":
        raise RuntimeError(f"talk {talk_id} failed: {talk['error']}")
    return talk


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.is_error:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}")
    return response.json()
