"""TalksClient: the happy path against a real (small) Talks server on 127.0.0.1; faults a real server
cannot produce on demand (503 storms, 429, timeouts, resets) through httpx.MockTransport."""

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
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from connectors.talks.client import TalksClient
from talkmill.errors import (
    TalksConnectionError,
    TalksHTTPError,
    TalksNotFound,
    TalksTimeout,
)

KEY = "tester:s3cret"
RESULT = bytes(range(256)) * 1200  # ~300 KB "video"
BODY = {"source_url": "https://example.invalid/face.png", "script": {"type": "text", "input": "Hello there."}}


# -- a small real Talks server -----------------------------------------------------------------------------


@dataclass
class FakeTalks:
    """Just enough of the Talks API: renders take `latency` seconds; a talk named "slow" answers its
    create `slow_create` seconds after it was stored (a timeout the client cannot tell from a loss)."""

    latency: float = 0.2
    slow_create: float = 0.5
    page_size: int = 2
    result_base: str = ""
    talks: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Authorization
    ids: Iterator[int] = field(default_factory=itertools.count)

    def creates(self, user_data: str) -> int:
        return sum(1 for t in self.talks.values() if t["user_data"] == user_data)

    def view(self, talk: dict[str, Any]) -> dict[str, Any]:
        age = time.monotonic() - talk["_born"]
        status = "done" if age >= self.latency else "started" if age >= self.latency / 2 else "created"
        shown = {k: v for k, v in talk.items() if not k.startswith("_")} | {"status": status}
        if status == "done":
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
        body = await request.json()
        if "source_url" not in body:
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


def _client(base: str, **kwargs: Any) -> TalksClient:
    options: dict[str, Any] = {"key": KEY, "timeout": 5.0, "backoff_base": 0.01} | kwargs
    return TalksClient(base, **options)


# -- against the real server -------------------------------------------------------------------------------


def test_upload_create_wait_stream_delete(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake

    async def scenario() -> tuple[str, dict[str, Any], bytes]:
        async with _client(api) as talks:
            source = await talks.upload_image(b"\x89PNG fake portrait", "face.png")
            talk_id = await talks.create_talk({**BODY, "source_url": source}, "script-happy")
            talk = await talks.wait_for_talk(talk_id, poll_interval=0.02, timeout=5)
            video = b"".join([chunk async for chunk in talks.stream_result(talk["result_url"])])
            await talks.delete_talk(talk_id)
            with pytest.raises(TalksNotFound):
                await talks.get_talk(talk_id)
            return talk_id, talk, video

    talk_id, talk, video = asyncio.run(scenario())
    assert talk["status"] == "done" and talk["user_data"] == "script-happy" and talk["id"] == talk_id
    assert video == RESULT
    api_auth = {auth for method, path, auth in state.seen if not path.startswith("/results/")}
    result_auth = [auth for method, path, auth in state.seen if path.startswith("/results/")]
    assert api_auth == {f"Basic {KEY}"}
    assert result_auth == [None]  # the key never goes to the result URL's host


def test_lookup_by_user_data_follows_pages_and_is_bounded(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake

    async def scenario() -> tuple[Any, ...]:
        async with _client(api) as talks:
            ids = [await talks.create_talk(BODY, f"paged-{n}") for n in range(5)]
            oldest = await talks.find_talk_by_user_data("paged-0")
            bounded = await talks.find_talk_by_user_data("paged-0", max_pages=2)
            missing = await talks.find_talk_by_user_data("never-created")
            return ids, oldest, bounded, missing

    ids, oldest, bounded, missing = asyncio.run(scenario())
    assert oldest["id"] == ids[0]  # on the third page of two
    assert bounded is None and missing is None


def test_a_validation_error_is_raised_at_once_with_its_fields(fake: tuple[FakeTalks, str]) -> None:
    state, api = fake
    sleeps: list[float] = []

    async def scenario() -> None:
        async with _client(api, sleep=_recorder(sleeps)) as talks:
            await talks.create_talk({"script": BODY["script"]}, "script-invalid")

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
            await talks.get_talk("tlk_0000")

    with pytest.raises(TalksHTTPError) as caught:
        asyncio.run(scenario())
    assert (caught.value.status, caught.value.kind) == (401, "AuthorizationError")


def test_a_create_that_timed_out_is_found_not_posted_again(fake: tuple[FakeTalks, str]) -> None:
    """The server stored the talk but answered after the client gave up: the lookup finds it."""
    state, api = fake

    async def scenario() -> str:
        async with _client(api, timeout=0.2) as talks:
            return await talks.create_talk({**BODY, "name": "slow"}, "script-slow")

    talk_id = asyncio.run(scenario())
    assert state.creates("script-slow") == 1
    assert state.talks[talk_id]["user_data"] == "script-slow"


def test_bearer_keys(fake: tuple[FakeTalks, str]) -> None:
    _, api = fake

    async def scenario() -> None:
        async with _client(api, key="tok-123", auth_scheme="Bearer") as talks:
            await talks.list_talks()
        async with _client(api, key="Bearer tok-123") as talks:  # a full header value passes as is
            await talks.list_talks()

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


def _mocked(script: Script, sleeps: list[float], **kwargs: Any) -> TalksClient:
    options: dict[str, Any] = {
        "key": KEY, "transport": httpx.MockTransport(script), "sleep": _recorder(sleeps),
        "jitter": lambda: 0.0, "backoff_base": 1.0, "max_retries": 4,
    } | kwargs  # fmt: skip
    return TalksClient("http://talks.test", **options)


def _created(talk_id: str = "tlk_new") -> httpx.Response:
    return httpx.Response(201, json={"id": talk_id, "object": "talk", "status": "created"})


def _busy(retry_after: str) -> httpx.Response:
    body = {"kind": "TooManyRequestsError", "description": "queue full"}
    return httpx.Response(429, json=body, headers={"Retry-After": retry_after})


def _run_create(script: Script, sleeps: list[float], **kwargs: Any) -> str:
    async def scenario() -> str:
        async with _mocked(script, sleeps, **kwargs) as talks:
            return await talks.create_talk(BODY, "script-1")

    return asyncio.run(scenario())


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
    found = {"id": "tlk_found", "user_data": "script-1", "created_at": datetime.now(timezone.utc).isoformat()}
    other = {"id": "tlk_other", "user_data": "script-2", "created_at": found["created_at"]}
    script, sleeps = Script([httpx.RemoteProtocolError("peer closed")], talks_list=[other, found]), []
    assert _run_create(script, sleeps) == "tlk_found"
    assert script.requests == ["POST /talks", "GET /talks"]  # never a second POST


def test_an_earlier_runs_talk_for_the_same_script_is_not_taken_for_this_create() -> None:
    yesterday = datetime.fromtimestamp(time.time() - 86400, timezone.utc).isoformat()
    stale = {"id": "tlk_yesterday", "user_data": "script-1", "status": "error", "created_at": yesterday}
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
            return await talks.create_talk(BODY, "script-1")

    with pytest.raises(TalksConnectionError) as caught:
        asyncio.run(scenario())
    assert caught.value.uncertain and script.count("POST /talks") == 1


def _status(status: str) -> httpx.Response:
    return httpx.Response(200, json={"id": "tlk_1", "status": status})


def test_polling_backs_off_to_the_max_interval() -> None:
    script, sleeps = Script([], gets=[_status("created")] + [_status("started")] * 5 + [_status("done")]), []
    now = [0.0]

    async def ticking_sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        now[0] += seconds

    async def scenario() -> dict[str, Any]:
        async with _mocked(script, sleeps, sleep=ticking_sleep, clock=lambda: now[0]) as talks:
            return await talks.wait_for_talk("tlk_1", poll_interval=1.0, max_interval=4.0, timeout=60)

    assert asyncio.run(scenario())["status"] == "done"
    assert sleeps == [1.0, 1.5, 2.25, 3.375, 4.0, 4.0]


def test_an_error_status_ends_the_wait() -> None:
    failed = httpx.Response(200, json={"id": "tlk_1", "status": "error", "error": {"kind": "FaceError"}})
    script, sleeps = Script([], gets=[failed]), []

    async def scenario() -> dict[str, Any]:
        async with _mocked(script, sleeps) as talks:
            return await talks.wait_for_talk("tlk_1")

    assert asyncio.run(scenario())["error"]["kind"] == "FaceError"


def test_the_overall_timeout_ends_the_wait_quickly() -> None:
    forever = httpx.MockTransport(lambda request: _status("started"))

    async def scenario() -> None:
        async with TalksClient("http://talks.test", KEY, transport=forever) as talks:
            await talks.wait_for_talk("tlk_1", poll_interval=0.05, timeout=0.3)

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
        async with TalksClient("http://talks.test", KEY, transport=httpx.MockTransport(hanging)) as talks:
            await talks.wait_for_talk("tlk_1", timeout=0.3)

    started = time.monotonic()
    with pytest.raises(TalksTimeout):
        asyncio.run(scenario())
    assert time.monotonic() - started < 1.0


def test_a_wake_up_cuts_the_pause_short() -> None:
    finished = threading.Event()
    api = httpx.MockTransport(lambda request: _status("done" if finished.is_set() else "started"))

    async def scenario() -> dict[str, Any]:
        wake = asyncio.Event()

        async def webhook_arrives() -> None:
            await asyncio.sleep(0.1)
            finished.set()
            wake.set()

        async with TalksClient("http://talks.test", KEY, transport=api) as talks:
            arrival = asyncio.create_task(webhook_arrives())
            talk = await talks.wait_for_talk("tlk_1", poll_interval=30, timeout=60, wake=wake)
            await arrival
            return talk

    started = time.monotonic()
    assert asyncio.run(scenario())["status"] == "done"
    assert time.monotonic() - started < 2.0


def test_a_result_url_that_fails_is_an_http_error() -> None:
    gone = httpx.MockTransport(lambda request: httpx.Response(403, text="<Error>Request has expired</Error>"))

    async def scenario() -> None:
        async with TalksClient("http://talks.test", KEY, transport=gone) as talks:
            async for _ in talks.stream_result("https://bucket.s3.example/v.mp4?X-Amz-Signature=abc"):
                pass

    with pytest.raises(TalksHTTPError) as caught:
        asyncio.run(scenario())
    assert caught.value.status == 403
