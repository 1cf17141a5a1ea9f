"""A Talks server that answers at once and "renders" each talk in a fixed time: for measuring the
pipeline's own overhead. It runs in its own process (no GIL shared with what is measured) and counts
busy slots (talks created and not yet rendered) over time, read at GET /stats."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from dataclasses import dataclass, field

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

from tests.engine.helpers import free_port

TINY_VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096  # the pipeline copies bytes; it never decodes here


@dataclass
class FakeTalks:
    latency: float
    talks: dict[str, dict] = field(default_factory=dict)
    busy_seconds: float = 0.0  # integral of talks in render over time
    first_create: float | None = None
    last_done: float = 0.0
    _ids = itertools.count(1)

    def create(self, body: dict) -> dict:
        now = time.monotonic()
        self.first_create = self.first_create or now
        talk_id = f"tlk_{next(self._ids)}"
        self.talks[talk_id] = {"id": talk_id, "user_data": body.get("user_data"), "created": now,
                               "created_at": "2026-11-24T00:00:00.000Z"}
        self.busy_seconds += self.latency
        self.last_done = max(self.last_done, now + self.latency)
        return {"id": talk_id, "object": "talk", "status": "created"}

    def read(self, talk_id: str, base: str) -> dict:
        talk = self.talks[talk_id]
        done = time.monotonic() - talk["created"] >= self.latency
        view = {"id": talk_id, "object": "talk", "user_data": talk["user_data"], "created_at": talk["created_at"],
                "status": "done" if done else "started"}
        if done:
            view |= {"result_url": f"{base}/results/{talk_id}.mp4", "duration": 1.0}
        return view

    def mean_busy_slots(self) -> float:
        span = self.last_done - (self.first_create or self.last_done)
        return self.busy_seconds / span if span > 0 else 0.0

    def reset(self) -> None:
        self.talks.clear()
        self.busy_seconds, self.first_create, self.last_done = 0.0, None, 0.0


def app_for(fake: FakeTalks) -> FastAPI:
    app = FastAPI()

    @app.post("/talks", status_code=201)
    async def create(request: Request) -> dict:
        return fake.create(await request.json())

    @app.get("/talks/{talk_id}")
    async def read(talk_id: str, request: Request) -> dict:
        return fake.read(talk_id, str(request.base_url).rstrip("/"))

    @app.get("/talks")
    async def listing(request: Request) -> dict:
        base = str(request.base_url).rstrip("/")
        return {"talks": [fake.read(t, base) for t in reversed(list(fake.talks))][:100]}

    @app.get("/stats")
    async def stats() -> dict:
        return {"talks": len(fake.talks), "mean_busy_slots": fake.mean_busy_slots()}

    @app.post("/reset")
    async def reset() -> dict:
        fake.reset()
        return {}

    @app.get("/results/{name}")
    async def result(name: str) -> Response:
        return Response(TINY_VIDEO, media_type="video/mp4")

    return app


def _run(latency: float, port: int) -> None:
    uvicorn.run(app_for(FakeTalks(latency)), host="127.0.0.1", port=port, log_level="error")


def serve(latency: float) -> tuple[str, multiprocessing.Process]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=_run, args=(latency, port), daemon=True)
    process.start()
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            httpx.get(f"{url}/stats", timeout=1)
            return url, process
        except httpx.HTTPError:
            time.sleep(0.05)
