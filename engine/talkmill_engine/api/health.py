"""Probes, without a key. `/health` is readiness: 200 once a worker has loaded its models (a talk
renders without a cold start), 503 before, and again while no worker is (all died, restarting). With
`--workers 0` the engine renders nothing, by design: it is ready as soon as it serves and its store is open
(it takes talks for other replicas' workers). `/live` is liveness: 200 while the server answers at all,
models or not, so a probe never restarts an engine that is only loading them."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

router = APIRouter(tags=["service"])


class Health(BaseModel):
    status: Literal["ok", "starting"]
    workers: int  # render workers alive with their models loaded
    starting: int  # render workers alive, still loading their models
    queued: int  # talks created or started


class Live(BaseModel):
    status: Literal["ok"]


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(request: Request) -> JSONResponse:
    state = request.app.state
    ready, alive = state.pool.ready_count(), state.pool.alive_count()
    is_ready = state.settings.workers == 0 or ready > 0
    body = Health(status="ok" if is_ready else "starting", workers=ready, starting=max(alive - ready, 0),
                  queued=state.store.count_active())  # fmt: skip
    return JSONResponse(body.model_dump(), status_code=200 if is_ready else 503)


@router.get("/live", response_model=Live)
def live() -> Live:
    return Live(status="ok")
