"""The /talks routes. Route functions are plain `def`: FastAPI runs them in its thread pool, and the
store gives each thread its own SQLite connection.

A caller sees only its own talks (the key's identity owns them): another tenant's talk is answered
exactly as one that does not exist.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from talkmill_engine.api.auth import require_key
from talkmill_engine.api.intake import TALK_ID, check_inputs, new_talk
from talkmill_engine.api.schemas import ErrorBody, Talk, TalkCreate, TalkCreated, TalkList
from talkmill_engine.errors import NotFoundError, TooManyRequestsError
from talkmill_engine.jobs.admission import retry_after
from talkmill_engine.jobs.store import TOKEN_PATTERN, QueueFull, TalkRecord



def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


router = APIRouter(prefix="/talks", tags=["talks"], dependencies=[Depends(require_key)],
                   responses=errors(400, 401))  # fmt: skip


@router.post("", status_code=201, response_model=TalkCreated, operation_id="create_talk",
             responses=errors(413, 429))  # fmt: skip
def create_talk(body: TalkCreate, request: Request, caller: str = Depends(require_key)) -> JSONResponse:
    state = request.app.state
    check_inputs(body, state.policy, caller, state.uploads)
    doc, job = new_talk(body, caller)
    try:
        state.store.create(doc, job, max_active=state.settings.max_queue)
    except QueueFull as full:
        raise TooManyRequestsError(
            f"The queue is full ({full.active} talks waiting or rendering); try again later.",
            retry_after=retry_after(state.store),
            details={"max_queue": state.settings.max_queue},
        ) from None
    created = {key: doc[key] for key in ("id", "object", "created_by", "created_at", "status")}
    return JSONResponse(created, status_code=201)


@router.get("/{talk_id}", response_model=Talk, operation_id="read_talk", responses=errors(404))
def read_talk(talk_id: str, request: Request, caller: str = Depends(require_key)) -> JSONResponse:
    return JSONResponse(own_talk(request, talk_id, caller).doc)


def own_talk(request: Request, talk_id: str, caller: str) -> TalkRecord:
    """The caller's talk; NotFoundError for one that does not exist or is another tenant's."""
    record = request.app.state.store.get(talk_id, owner=caller) if TALK_ID.match(talk_id) else None
    if record is None:
        raise NotFoundError(f"Talk {talk_id!r} not found.")
    return record


@router.get("", response_model=TalkList, operation_id="list_talks")
def list_talks(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    token: str | None = Query(None, pattern=TOKEN_PATTERN, description="The `token` of the previous page."),
    caller: str = Depends(require_key),
) -> JSONResponse:
    talks, next_token = request.app.state.store.list_page(limit, token, owner=caller)
    body: dict[str, Any] = {"talks": talks}
    if next_token:
        body["token"] = next_token
    return JSONResponse(body)


@router.delete("/{talk_id}", response_model=Talk, operation_id="delete_talk",
               responses=errors(404, 409))  # fmt: skip
def delete_talk(talk_id: str, request: Request, caller: str = Depends(require_key)) -> JSONResponse:
    """Deletes a finished talk and its files; 409 NotReadyError while it is created or started."""
    state = request.app.state
    own_talk(request, talk_id, caller)  # a malformed id is as absent as another's talk
    record = state.store.delete(talk_id, owner=caller)
    state.results.delete_talk(talk_id)
    return JSONResponse(record.doc)
