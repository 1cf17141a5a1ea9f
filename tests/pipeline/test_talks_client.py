"""The D-ID wire format's client (connectors.talks.did): the happy path against a real (small) Talks server
on 127.0.0.1; faults a real server cannot produce on demand (503 storms, 429, timeouts, resets) through
httpx.MockTransport. The fake server and `script_for` are shared with tests/pipeline/test_backends_*.py."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from connectors.talks.base import TalkResult
from connectors.talks.did import DidTalks, TalkmillTalks
from talkmill.errors import (
    TalksConnectionError,
    TalksHTTPError,
    TalksNotFound,
    TalksTimeout,
)
from talkmill.models import Script as TalkScript
from talkmill.models import SourceRef, Voice
from tests.engine.helpers import png_bytes

KEY = "tester:s3cret"
RESULT = bytes(range(256)) * 1200  # ~300 KB "video"
SOURCE_URL = "https://example.invalid/face.png"


def script_for(script_id: str, text: str = "Hello there.", **fields: Any) -> TalkScript:
    """A planned script as tasks/scripts.py would make it; `fields` override (config, driver_url, ...)."""
    source = SourceRef(type="text", uri="file:///tmp/note.txt", id="note", checksum="0" * 64)
    values: dict[str, Any] = {
        "id": script_id, "text": text, "source": source, "document_title": "Note", "section_title": None,
        "section_index": 0, "chunk_index": 0, "chunk_count": 1, "presenter": SOURCE_URL, "voice": Voice(),
    } | fields  # fmt: skip
    return TalkScript(**values)


# -- a small real Talks server -----------------------------------------------------------------------------


@dataclass
class FakeTalks:
    """Just enough of the Talks API: renders take `latency` seconds; a talk named "slow" answers its
    create `slow_create` seconds after it was stored (a timeout the client cannot tell from a loss), one
    named "no-result" ends done without a result_url, an image named "no-url.png" uploads without a url.
    `bodies` holds every POST /talks body; `stuck_token` makes GET /talks hand out the same token forever;
    the next `busy` creates are refused 429 with `Retry-After: <retry_after>`."""

    latency: float = 0.2
    slow_create: float = 0.5
    page_size: int = 2
    result_base: str = ""
    stuck_token: str | None = None
    busy: int = 0
    retry_after: str = "1.5"
    post_times: list[float] = field(default_factory=list)  # monotonic arrival of each POST /talks
    talks: dict[str, dict[str, Any]] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Authorization
    ids: Iterator[int] = field(default_factory=itertools.count)

    def creates(self, user_data: str) -> int:
        return sum(1 for t in self.talks.values() if t["user_data"] == user_data)

    def view(self, talk: dict[str, Any]) -> dict[str, Any]:
        age = time.monotonic() - talk["_born"]
        status = "done" if age >= self.latency else "started" if age >= self.latency / 2 else "created"
        shown = {k: v for k, v in talk.items() if not k.startswith("_")} | {"status": status}
        if status == "done" and talk["name"] != "no-result":
            shown["result_url"] = f"{self.result_base}/results/{talk['id']}.mp4?sig=presigned"
        return shown


def _error(status: int, kind: str, description: str, details: Any = None) -> JSONResponse:
    body = {"kind": kind, "description": description} | ({"details": details} if details else {})
    return JSONResponse(body, status_code=status)


def _missing(talk_id: str) -> JSONResponse:
    return _error(404, "NotFoundError", f"{talk_id} not found")


def fake_app(state: FakeTalks) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def gatekeeper(request: Request, call_next: Callable) -> Response:
        auth = request.headers.get("authorization")
        state.seen.append((request.method, request.url.path, auth))
        api = not request.url.path.startswith("/results/")
        if api and auth not in (f"Basic {KEY}", "Bearer tok-123"):
            return _error(401, "AuthorizationError", "bad key")
        return await call_next(request)

    @app.post("/talks", status_code=201)
    async def create_talk(request: Request) -> JSONResponse:
        state.post_times.append(time.monotonic())
        if state.busy > 0:
            state.busy -= 1
            return JSONResponse({"kind": "TooManyRequestsError", "description": "queue full"}, 429,
                                headers={"Retry-After": state.retry_after})
        body = await request.json()
        state.bodies.append(body)
        if not body.get("source_url"):
            return _error(400, "ValidationError", "source_url is required", {"field": "source_url"})
        talk_id = f"tlk_{next(state.ids):04d}"
        now = datetime.now(timezone.utc).isoformat()
        state.talks[talk_id] = {
            "id": talk_id, "object": "talk", "created_at": now, "user_data": body.get("user_data"),
            "name": body.get("name"), "_born": time.monotonic(),
        }  # fmt: skip
        if body.get("name") == "slow":
            await asyncio.sleep(state.slow_create)
        return JSONResponse({"id": talk_id, "object": "talk", "status": "created", "created_at": now}, 201)

    @app.get("/talks")
    async def list_talks(token: str | None = None) -> dict[str, Any]:
        if state.stuck_token:
            return {"talks": [], "token": state.stuck_token}
        newest_first = list(reversed(state.talks.values()))
        start = int(token or 0)
        page = [state.view(t) for t in newest_first[start : start + state.page_size]]
        more = start + state.page_size < len(newest_first)
        return {"talks": page} | ({"token": str(start + state.page_size)} if more else {})

    @app.get("/talks/{talk_id}")
    async def read_talk(talk_id: str) -> Response:
        talk = state.talks.get(talk_id)
        return JSONResponse(state.view(talk)) if talk else _missing(talk_id)

    @app.delete("/talks/{talk_id}")
    async def delete_talk(talk_id: str) -> Response:
        talk = state.talks.pop(talk_id, None)
        return JSONResponse(state.view(talk)) if talk else _missing(talk_id)

    @app.post("/images", status_code=201)
    async def upload_image(image: UploadFile = File(...)) -> dict[str, str]:
        data = await image.read()
        if image.filename == "no-url.png":
            return {"id": f"img_{len(data)}"}
        return {"id": f"img_{len(data)}", "url": f"upload://images/{image.filename}/{len(data)}"}

    @app.get("/results/{name}")
    async def result(name: str) -> Response:
        return Response(RESULT, media_type="video/mp4")

    return app


@contextmanager
def serve(app: FastAPI, ports: int = 1) -> Iterator[list[str]]:
    """uvicorn in a thread on `ports` loopback sockets (one app, several origins); their base URLs."""
    sockets = []
    for _ in range(ports):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the fake Talks server did not start"
    try:
        yield [f"http://127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeTalks, str]]:
    state = FakeTalks()
    with serve(fake_app(state), ports=2) as (api, results):
        state.result_base = results  # another origin, like D-ID's presigned S3 result URLs
        yield state, api


def _client(base: str, **kwargs: Any) -> TalkmillTalks:
    options: dict[str, Any] = {"key": KEY, "timeout": 5.0, "backoff_base": 0.01} | kwargs
    return TalkmillTalks(base, **options)


# -- against the real server -------------------------------------------------------------------------------


def test_upload_create_wait_stream_delete(fake: tuple[FakeTalks, str], tmp_path: Path) -> None:
    state, api = fake
    portrait = tmp_path / "face.png"
    portrait.write_bytes(png_bytes(8, 8))  # an upload must read as an image

    async def scenario() -> tuple[str, TalkResult, bytes]:
        async with _client(api) as talks:
            source = await talks.upload_image(portrait)
            ref = await talks.create(script_for("script-happy"), source, None)
            result = await talks.wait(ref.id, poll_interval=0.02, timeout=5)
            video = b"".join([chunk async for chunk in talks.stream_result(result)])
            await talks.delete(ref.id)
            with pytest.raises(TalksNotFound):
                await talks.check(ref.id)
            return ref.id, result, video

    talk_id, result, video = asyncio.run(scenario())
    assert result.status == "done" and result.id == talk_id and result.raw["user_data"] == "script-happy"
    assert state.bodies[-1]["source_url"] == f"upload://images/face.png/{portrait.stat().st_size}"
    assert video == RESULT
    api_auth = {auth for method, path, auth in state.seen if not path.startswith("/results/")}
    result_auth = [auth for method, path, auth in state.seen if path.startswith("/results/")]
    assert api_auth == {f"Basic {KEY}"}
    assert result_auth == [None]  # the key never goes to the result URL's host


def test_lookup_by_script_id_follows_pages_and_is_bounded(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake

    async def scenario() -> tuple[Any, ...]:
        async with _client(api) as talks:
            refs = [await talks.create(script_for(f"paged-{n}"), SOURCE_URL, None) for n in range(5)]
            oldest = await talks.find_by_script("paged-0")
            bounded = await talks.find_by_script("paged-0", max_pages=2)
            missing = await talks.find_by_script("never-created")
            return refs, oldest, bounded, missing

    refs, oldest, bounded, missing = asyncio.run(scenario())
    assert oldest.id == refs[0].id  # on the third page of two
    assert bounded is None and missing is None


def test_the_existing_index_is_one_listing_for_the_batch(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake

    async def scenario() -> tuple[dict[str, str], list[str], int]:
        async with _client(api, index_pages=5) as talks:
            ids = [(await talks.create(script_for(f"batch-{n}"), SOURCE_URL, None)).id for n in range(3)]
            before = len(state.seen)
            found = await talks.find_existing({"batch-0", "batch-2", "batch-never"})
            return {script_id: ref.id for script_id, ref in found.items()}, ids, len(state.seen) - before

    found, ids, calls = asyncio.run(scenario())
    assert found == {"batch-0": ids[0], "batch-2": ids[2]}
    assert calls <= 5  # bounded in pages, whatever the server holds


def test_a_validation_error_is_raised_at_once_with_its_fields(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake
    sleeps: list[float] = []

    async def scenario() -> None:
        async with _client(api, sleep=_recorder(sleeps)) as talks:
            await talks.create(script_for("script-invalid"), "", None)

    with pytest.raises(TalksHTTPError) as caught:
        asyncio.run(scenario())
    error = caught.value
    assert (error.status, error.kind, error.details) == (400, "ValidationError", {"field": "source_url"})
    assert error.description == "source_url is required" and not error.transient
    assert sleeps == []  # not retried, and no lookup: a 400 is certain


def test_a_bad_key_is_refused_at_once(fake: tuple[FakeTalks, str]) -> None:
    _, api = fake

    async def scenario() -> None:
        async with _client(api, key="someone:else") as talks:
            await talks.check("tlk_0000")

    with pytest.raises(TalksHTTPError) as caught:
        asyncio.run(scenario())
    assert (caught.value.status, caught.value.kind) == (401, "AuthorizationError")


def test_a_create_that_timed_out_is_found_not_posted_again(fake: tuple[FakeTalks, str]) -> None:
    """The server stored the talk but answered after the client gave up: the lookup finds it."""
    state, api = fake

    async def scenario() -> str:
        async with _client(api, timeout=0.2) as talks:
            return (await talks.create(script_for("script-slow", output_name="slow"), SOURCE_URL, None)).id

    talk_id = asyncio.run(scenario())
    assert state.creates("script-slow") == 1
    assert state.talks[talk_id]["user_data"] == "script-slow"


def test_bearer_keys(fake: tuple[FakeTalks, str]) -> None:
    _, api = fake

    async def scenario() -> None:
        async with _client(api, key="tok-123", auth_scheme="Bearer") as talks:
            await talks.find_existing({"anything"})
        async with _client(api, key="Bearer tok-123") as talks:  # a full header value passes as is
            await talks.find_existing({"anything"})

    asyncio.run(scenario())


# -- faults, through MockTransport -------------------------------------------------------------------------


class Script:
    """A MockTransport handler answering POST /talks, GET /talks and GET /talks/{id} from queues."""

    def __init__(
        self, creates: list[Any], talks_list: list[dict] | None = None, gets: list[Any] = ()
    ) -> None:
        self.creates, self.gets = list(creates), list(gets)
        self.talks_list = talks_list or []
        self.requests: list[str] = []

    def count(self, what: str) -> int:
        return self.requests.count(what)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        what = f"{request.method} {'/talks/{id}' if path.startswith('/talks/') else path}"
        self.requests.append(what)
        if what == "GET /talks":
            return httpx.Response(200, json={"talks": self.talks_list})
        answer = (self.creates if what == "POST /talks" else self.gets).pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _recorder(sleeps: list[float]) -> Callable[[float], Any]:
    async def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))

    return sleep


def _mocked(script: Script, sleeps: list[float], **kwargs: Any) -> DidTalks:
    options: dict[str, Any] = {
        "key": KEY, "transport": httpx.MockTransport(script), "sleep": _recorder(sleeps),
        "jitter": lambda: 0.0, "backoff_base": 1.0, "max_retries": 4,
    } | kwargs  # fmt: skip
    return DidTalks("http://talks.test", **options)


def _created(talk_id: str = "tlk_new") -> httpx.Response:
    return httpx.Response(201, json={"id": talk_id, "object": "talk", "status": "created"})


def _busy(retry_after: str) -> httpx.Response:
    body = {"kind": "TooManyRequestsError", "description": "queue full"}
    return httpx.Response(429, json=body, headers={"Retry-After": retry_after})


def _run_create(script: Script, sleeps: list[float], **kwargs: Any) -> str:
    async def scenario() -> str:
        async with _mocked(script, sleeps, **kwargs) as talks:
            return (await talks.create(script_for("script-1"), SOURCE_URL, None)).id

    return asyncio.run(scenario())


def _listed(talk_id: str, script_id: str, created_at: str) -> dict[str, Any]:
    return {"id": talk_id, "status": "started", "user_data": script_id, "created_at": created_at}


def test_429_waits_for_retry_after_then_succeeds() -> None:
    script, sleeps = Script([_busy("7"), _busy("600"), _created()]), []
    assert _run_create(script, sleeps, retry_after_cap=60) == "tlk_new"
    assert sleeps == [7, 60]  # as asked, then capped
    assert script.count("GET /talks") == 0  # a 429 is a certain refusal: nothing to look up


def test_a_503_storm_then_success() -> None:
    unavailable = httpx.Response(503, json={"kind": "UnknownError", "description": "overloaded"})
    script, sleeps = Script([unavailable] * 3 + [_created()]), []
    assert _run_create(script, sleeps, backoff_cap=3.0) == "tlk_new"
    assert sleeps == [0.5, 1.0, 1.5]  # base·2ⁿ capped at 3 s, then halved by the (zero) jitter
    assert script.count("GET /talks") == 3  # each 5xx was uncertain: looked up before posting again


def test_a_503_storm_that_outlasts_the_budget() -> None:
    unavailable = httpx.Response(503, text="Service Unavailable")
    script, sleeps = Script([unavailable] * 3), []
    with pytest.raises(TalksHTTPError) as caught:
        _run_create(script, sleeps, max_retries=2)
    assert caught.value.status == 503 and caught.value.transient and caught.value.kind == "HTTP503"
    assert script.count("POST /talks") == 3


def test_a_timed_out_create_with_nothing_found_is_posted_once_more() -> None:
    script, sleeps = Script([httpx.ReadTimeout("no answer"), _created()]), []
    assert _run_create(script, sleeps) == "tlk_new"
    assert script.requests == ["POST /talks", "GET /talks", "POST /talks"]


def test_a_reset_after_sending_is_resolved_by_the_lookup() -> None:
    now = datetime.now(timezone.utc).isoformat()
    listed = [_listed("tlk_other", "script-2", now), _listed("tlk_found", "script-1", now)]
    script, sleeps = Script([httpx.RemoteProtocolError("peer closed")], talks_list=listed), []
    assert _run_create(script, sleeps) == "tlk_found"
    assert script.requests == ["POST /talks", "GET /talks"]  # never a second POST


def test_an_earlier_runs_talk_for_the_same_script_is_not_taken_for_this_create() -> None:
    yesterday = datetime.fromtimestamp(time.time() - 86400, timezone.utc).isoformat()
    stale = _listed("tlk_yesterday", "script-1", yesterday) | {"status": "error"}
    script, sleeps = Script([httpx.ReadTimeout("no answer"), _created()], talks_list=[stale]), []
    assert _run_create(script, sleeps) == "tlk_new"
    assert script.requests == ["POST /talks", "GET /talks", "POST /talks"]


def test_a_refused_connection_is_retried_without_a_lookup() -> None:
    script, sleeps = Script([httpx.ConnectError("refused"), _created()]), []
    assert _run_create(script, sleeps) == "tlk_new"
    assert script.requests == ["POST /talks", "POST /talks"]  # it never reached the server


def test_an_uncertain_create_whose_lookup_fails_is_not_guessed() -> None:
    script, sleeps = Script([httpx.ReadTimeout("no answer")]), []
    script.talks_list = None  # type: ignore[assignment]

    def lookup_down(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            raise httpx.ConnectError("refused")
        return script(request)

    async def scenario() -> str:
        lookup_fails = httpx.MockTransport(lookup_down)
        async with _mocked(script, sleeps, transport=lookup_fails, max_retries=1) as talks:
            return (await talks.create(script_for("script-1"), SOURCE_URL, None)).id

    with pytest.raises(TalksConnectionError) as caught:
        asyncio.run(scenario())
    assert caught.value.uncertain and script.count("POST /talks") == 1


def _status(status: str) -> httpx.Response:
    done = {"result_url": "https://results.test/tlk_1.mp4"} if status == "done" else {}
    return httpx.Response(200, json={"id": "tlk_1", "status": status} | done)


def test_polling_backs_off_to_the_max_interval() -> None:
    script, sleeps = Script([], gets=[_status("created")] + [_status("started")] * 5 + [_status("done")]), []
    now = [0.0]

    async def ticking_sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        now[0] += seconds

    async def scenario() -> TalkResult:
        async with _mocked(script, sleeps, sleep=ticking_sleep, clock=lambda: now[0]) as talks:
            return await talks.wait("tlk_1", poll_interval=1.0, max_interval=4.0, timeout=60)

    assert asyncio.run(scenario()).status == "done"
    assert sleeps == [1.0, 1.5, 2.25, 3.375, 4.0, 4.0]


def test_polling_outlasts_a_replica_down_until_the_talk_is_done() -> None:
    """Connection errors for longer than one request's retries (a replica killed mid-render) do not end
    the wait: the talk finished elsewhere is found when the API answers again."""
    refused = [httpx.ConnectError("connection refused")] * 12  # three requests' worth of retries
    script, sleeps = Script([], gets=[_status("started"), *refused, _status("done")]), []
    now = [0.0]

    async def ticking_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    async def scenario() -> TalkResult:
        async with _mocked(script, sleeps, sleep=ticking_sleep, clock=lambda: now[0], max_retries=3) as talks:
            return await talks.wait("tlk_1", poll_interval=1.0, max_interval=4.0, timeout=600)

    assert asyncio.run(scenario()).status == "done"
    assert script.count("GET /talks/{id}") == 14


def test_polling_reports_the_connection_error_at_the_deadline() -> None:
    script, sleeps = Script([], gets=[httpx.ConnectError("connection refused")] * 400), []
    now = [0.0]

    async def ticking_sleep(seconds: float) -> None:
        now[0] += seconds

    async def scenario() -> None:
        async with _mocked(script, sleeps, sleep=ticking_sleep, clock=lambda: now[0]) as talks:
            await talks.wait("tlk_1", poll_interval=1.0, max_interval=4.0, timeout=30)

    with pytest.raises(TalksConnectionError):
        asyncio.run(scenario())
    assert now[0] >= 30


def test_an_error_status_ends_the_wait() -> None:
    error = {"kind": "FaceError", "description": "No valid face detected"}
    failed = httpx.Response(200, json={"id": "tlk_1", "status": "error", "error": error})
    script, sleeps = Script([], gets=[failed]), []

    async def scenario() -> TalkResult:
        async with _mocked(script, sleeps) as talks:
            return await talks.wait("tlk_1")

    result = asyncio.run(scenario())
    assert (result.status, result.error.kind, result.error.description) == ("error", *error.values())


def test_the_overall_timeout_ends_the_wait_quickly() -> None:
    forever = httpx.MockTransport(lambda request: _status("started"))

    async def scenario() -> None:
        async with DidTalks("http://talks.test", KEY, transport=forever) as talks:
            await talks.wait("tlk_1", poll_interval=0.05, timeout=0.3)

    started = time.monotonic()
    with pytest.raises(TalksTimeout) as caught:
        asyncio.run(scenario())
    assert time.monotonic() - started < 1.0
    assert caught.value.last_status == "started" and caught.value.talk_id == "tlk_1"


def test_the_overall_timeout_holds_when_the_api_hangs() -> None:
    async def hanging(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return _status("done")

    async def scenario() -> None:
        async with DidTalks("http://talks.test", KEY, transport=httpx.MockTransport(hanging)) as talks:
            await talks.wait("tlk_1", timeout=0.3)

    started = time.monotonic()
    with pytest.raises(TalksTimeout):
        asyncio.run(scenario())
    assert time.monotonic() - started < 1.0


def test_a_wake_up_cuts_the_pause_short() -> None:
    finished = threading.Event()
    api = httpx.MockTransport(lambda request: _status("done" if finished.is_set() else "started"))

    async def scenario() -> TalkResult:
        wake = asyncio.Event()

        async def webhook_arrives() -> None:
            await asyncio.sleep(0.1)
            finished.set()
            wake.set()

        async with DidTalks("http://talks.test", KEY, transport=api) as talks:
            arrival = asyncio.create_task(webhook_arrives())
            result = await talks.wait("tlk_1", poll_interval=30, timeout=60, wake=wake)
            await arrival
            return result

    started = time.monotonic()
    assert asyncio.run(scenario()).status == "done"
    assert time.monotonic() - started < 2.0


def test_a_result_url_that_fails_is_an_http_error() -> None:
    gone = httpx.MockTransport(lambda request: httpx.Response(403, text="<Error>Request has expired</Error>"))
    expired = TalkResult("tlk_1", "done", "https://bucket.s3.example/v.mp4?X-Amz-Signature=abc")

    async def scenario() -> None:
        async with DidTalks("http://talks.test", KEY, transport=gone) as talks:
            async for _ in talks.stream_result(expired):
                pass

    with pytest.raises(TalksHTTPError) as caught:
        asyncio.run(scenario())
    assert caught.value.status == 403
