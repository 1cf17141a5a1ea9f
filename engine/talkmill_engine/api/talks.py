"""The /talks routes. Route functions are plain `def`: FastAPI runs them in its thread pool, and the
store gives each thread its own SQLite connection."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from talkmill_engine.api.auth import require_key
from talkmill_engine.api.intake import check_inputs, new_talk
from talkmill_engine.api.schemas import ErrorBody, Talk, TalkCreate, TalkCreated, TalkList
from talkmill_engine.errors import NotFoundError, TooManyRequestsError

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 415, 429)
}
router = APIRouter(prefix="/talks", tags=["talks"], dependencies=[Depends(require_key)], responses=ERRORS)


@router.post("", status_code=201, response_model=TalkCreated)
def create_talk(body: TalkCreate, request: Request, caller: str = Depends(require_key)) -> JSONResponse:
    state = request.app.state
    check_inputs(body, state.policy)
    active = state.store.count_active()
    if active >= state.settings.max_queue:
        raise TooManyRequestsError(
            f"The queue is full ({active} talks waiting or rendering); try again later.",
            retry_after=retry_after(active, state.settings.workers),
            details={"max_queue": state.settings.max_queue},
        )
    doc, job = new_talk(body, caller)
    state.store.create(doc, job)
    created = {key: doc[key] for key in ("id", "object", "created_by", "created_at", "status")}
    return JSONResponse(created, status_code=201)


def retry_after(active: int, workers: int) -> int:
    """A rough wait in seconds: a short talk takes a few seconds per worker."""
    return max(1, min(60, 5 * active // max(workers, 1)))


@router.get("/{talk_id}", response_model=Talk)
def read_talk(talk_id: str, request: Request) -> JSONResponse:
    record = request.app.state.store.get(talk_id)
    if record is None:
        raise NotFoundError(f"Talk {talk_id!r} not found.")
    return JSONResponse(record.doc)


@router.get("", response_model=TalkList)
def list_talks(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    token: str | None = Query(None),
) -> JSONResponse:
    talks, next_token = request.app.state.store.list_page(limit, token)
    body: dict[str, Any] = {"talks": talks}
    if next_token:
        body["token"] = next_token
    return JSONResponse(body)


@router.delete("/{talk_id}", response_model=Talk)
def delete_talk(talk_id: str, request: Request) -> JSONResponse:
    """Deletes a finished talk and its files; 409 NotReadyError while it is created or started."""
    state = request.app.state
    record = state.store.delete(talk_id)
    state.results.delete_talk(talk_id)
    return JSONResponse(record.doc)
