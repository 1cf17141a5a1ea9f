"""Signed webhook delivery to real receivers on 127.0.0.1, and the signature scheme itself."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from talkmill_engine.fetch import FetchPolicy
from talkmill_engine.jobs.dispatch import SCHEDULE, next_attempt_at
from talkmill_engine.webhooks import RETRY_AFTER_CAP, DeliveryResult, deliver_webhook

from talks_contract import signatures
from talks_contract.signatures import SIGNATURE_HEADER, SignatureError, sign, verify
from talks_contract.urlpolicy import UrlPolicy

SECRET = "whsec_test"
BODY = json.dumps({"id": "tlk_1", "status": "done"}).encode()
LOOPBACK = FetchPolicy(webhooks=UrlPolicy.from_entries("127.0.0.0/8"), timeout=2.0)
FAST = (0.01, 0.01, 0.01)


# -- signatures --------------------------------------------------------------------------------------------


def test_sign_then_verify_round_trips() -> None:
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    verify(SECRET, header, BODY, now=1_700_000_100)


def test_a_tampered_body_or_wrong_secret_is_a_mismatch() -> None:
    header = sign(SECRET, BODY)
    with pytest.raises(SignatureError, match="mismatch"):
        verify(SECRET, header, BODY.replace(b"done", b"error"))
    with pytest.raises(SignatureError, match="mismatch"):
        verify("another secret", header, BODY)


def test_a_stale_timestamp_is_refused() -> None:
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match="stale"):
        verify(SECRET, header, BODY, now=1_700_000_301)
    with pytest.raises(SignatureError, match="stale"):  # from the future too
        verify(SECRET, header, BODY, now=1_699_999_000)
    verify(SECRET, header, BODY, tolerance=1000, now=1_700_000_301)


@pytest.mark.parametrize(
    "header, reason",
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        ("v1=" + "a" * 64, "malformed"),
        ("t=abc,v1=" + "a" * 64, "malformed"),
        ("t=²,v1=" + "a" * 64, "malformed"),
        ("t=1,t=2,v1=" + "a" * 64, "malformed"),
        ("t=1700000000", "malformed"),
        ("t=1700000000,v1=xyz", "malformed"),
    ],
)
def test_malformed_headers_say_why(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, header, BODY, now=1_700_000_000)


def test_any_of_several_v1_values_may_match() -> None:
    """A sender rotating secrets signs with the old and the new one."""
    new = sign(SECRET, BODY, timestamp=1_700_000_000)
    old = sign("old secret", BODY, timestamp=1_700_000_000)
    both = f"{old},{new.split(',')[1]}"
    verify(SECRET, both, BODY, now=1_700_000_000)
    verify("old secret", both, BODY, now=1_700_000_000)
    assert issubclass(SignatureError, ValueError)


# -- a receiver on loopback --------------------------------------------------------------------------------


@dataclass
class Receiver:
    statuses: list[int]  # answered in turn; the last one repeats
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    received: list[dict] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(statuses=[200])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                verify(SECRET, self.headers.get(SIGNATURE_HEADER), body, now=time.time())
                verdict = "ok"
            except SignatureError as e:
                verdict = str(e)
            state.received.append({"headers": dict(self.headers), "body": body, "signature": verdict})
            time.sleep(state.delay)
            status = state.statuses[min(len(state.received), len(state.statuses)) - 1]
            self.send_response(status if verdict == "ok" else 401)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # fast shutdown
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/talks"
    yield state
    server.shutdown()
    server.server_close()


def _deliver(url: str, policy: FetchPolicy = LOOPBACK, **kwargs) -> DeliveryResult:
    return asyncio.run(deliver_webhook(url, BODY, SECRET, policy, **kwargs))


def test_delivery_retries_503_then_succeeds(receiver: Receiver) -> None:
    receiver.statuses = [503, 503, 200]
    result = _deliver(receiver.url, backoff=FAST)
    assert result == DeliveryResult(delivered=True, attempts=3, last_error=None)
    assert [r["signature"] for r in receiver.received] == ["ok", "ok", "ok"]
    first = receiver.received[0]
    assert first["body"] == BODY
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["Host"] == receiver.url.split("/")[2]


def test_a_400_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    result = _deliver(receiver.url, backoff=FAST)
    assert result.delivered is False
    assert result.attempts == 1
    assert "HTTP 400" in (result.last_error or "")
    assert len(receiver.received) == 1


def test_giving_up_after_the_last_attempt(receiver: Receiver) -> None:
    receiver.statuses = [500]
    result = _deliver(receiver.url, attempts=3, backoff=FAST)
    assert (result.delivered, result.attempts, len(receiver.received)) == (False, 3, 3)
    assert "HTTP 500" in (result.last_error or "")


def test_private_receivers_are_refused_without_allow_private(receiver: Receiver) -> None:
    result = _deliver(receiver.url, FetchPolicy(), backoff=FAST)
    assert (result.delivered, result.attempts) == (False, 1)
    assert "non-public address 127.0.0.1" in (result.last_error or "")
    assert receiver.received == []


def test_retry_after_is_honoured_up_to_a_cap(receiver: Receiver) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    receiver.statuses, receiver.headers = [429, 429, 200], {"Retry-After": "7"}
    assert _deliver(receiver.url, backoff=(2, 8), sleep=record).delivered
    assert waits == [7, 8]  # "not before 7 s": the longer of Retry-After and the planned backoff
    waits.clear()
    receiver.received.clear()
    receiver.headers = {"Retry-After": "86400"}
    assert _deliver(receiver.url, backoff=(2, 8), sleep=record).delivered
    assert waits == [RETRY_AFTER_CAP, RETRY_AFTER_CAP]


@pytest.mark.parametrize(("header", "wait"), [("1.5", 1.5), ("0", 0.01), ("soon", 0.01)])
def test_retry_after_is_read_as_the_contract_reads_it(receiver: Receiver, header: str, wait: float) -> None:
    """Fractional seconds count (talks_contract.retry); an unreadable value leaves the planned backoff."""
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    receiver.statuses, receiver.headers = [503, 200], {"Retry-After": header}
    assert _deliver(receiver.url, backoff=(0.01,), sleep=record).delivered
    assert waits == [wait]


def test_connection_errors_and_timeouts_are_retried(receiver: Receiver) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _deliver(f"http://127.0.0.1:{port}/hook", attempts=2, backoff=FAST)
    assert (result.delivered, result.attempts) == (False, 2)
    assert "ConnectError" in (result.last_error or "")

    receiver.delay = 0.5
    started = time.monotonic()
    result = _deliver(receiver.url, replace(LOOPBACK, timeout=0.2), attempts=2, backoff=FAST)
    assert (result.delivered, result.attempts) == (False, 2)
    assert "timed out" in (result.last_error or "")
    assert time.monotonic() - started < 1.0


def test_each_attempt_is_signed_afresh(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time())
    clock = iter([now, now + 9])  # the signer's clock only; the receiver checks against the real one
    monkeypatch.setattr(signatures, "time", SimpleNamespace(time=lambda: next(clock)))
    receiver.statuses = [503, 200]
    assert _deliver(receiver.url, backoff=FAST).delivered
    stamps = [r["headers"][SIGNATURE_HEADER].split(",")[0] for r in receiver.received]
    assert stamps == [f"t={now}", f"t={now + 9}"]


@pytest.mark.parametrize("url", ["file:///tmp/x", "s3://bucket/hook", "upload://images/x", "not a url"])
def test_non_http_webhook_urls_are_not_attempted(url: str) -> None:
    result = _deliver(url, backoff=FAST)
    assert (result.delivered, result.attempts) == (False, 1)
    assert result.last_error


def test_a_dns_failure_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    from talkmill_engine import fetch

    def no_such_host(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(fetch, "resolve_host", no_such_host)
    result = _deliver("https://hooks.example/talks", FetchPolicy(), attempts=3, backoff=FAST)
    assert (result.delivered, result.attempts) == (False, 3)
    assert "could not resolve" in (result.last_error or "")


# -- the retry schedule ------------------------------------------------------------------------------------


def test_the_schedule_retries_for_24_hours_then_stops() -> None:
    assert len(SCHEDULE) == 8 and SCHEDULE[0] == 0 and SCHEDULE[-1] == 24 * 3600
    now, made, times = 1000.0, 0, []
    while (due := next_attempt_at(made + 1, now)) is not None:  # every attempt fails at once
        made, now = made + 1, due
        times.append(now - 1000.0)
    assert times == list(SCHEDULE[1:]) and made + 1 == len(SCHEDULE)


def test_the_schedule_scales_and_yields_to_retry_after() -> None:
    assert next_attempt_at(1, 0.0, scale=0.001) == pytest.approx(0.005)
    assert next_attempt_at(2, 0.0, scale=0.001) == pytest.approx(0.295)
    assert next_attempt_at(1, 0.0, retry_after=30) == 30  # "not before 30 s" over the planned 5 s
    assert next_attempt_at(2, 0.0, retry_after=30) == 295  # the planned wait was longer
    assert next_attempt_at(1, 0.0, retry_after=86400) == RETRY_AFTER_CAP  # asked for a day: capped
    assert next_attempt_at(len(SCHEDULE), 0.0) is None


def test_a_delivery_result_says_whether_to_try_again(receiver: Receiver) -> None:
    receiver.statuses, receiver.headers = [503], {"Retry-After": "12"}
    busy = _deliver(receiver.url, attempts=1)
    assert (busy.delivered, busy.retry, busy.retry_after) == (False, True, 12)
    receiver.statuses, receiver.headers = [410], {}
    gone = _deliver(receiver.url, attempts=1)
    assert (gone.delivered, gone.retry) == (False, False)  # refused: no later attempt
