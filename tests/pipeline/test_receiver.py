"""WebhookReceiver: real HTTP deliveries on 127.0.0.1, signed as the engine signs them and verified by the
backend (TalksBackend.verify_webhook: D-ID's format with our Talks-Signature)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.receiver import WebhookReceiver
from connectors.talks.base import TalkRef, TalkResult, WebhookRejected
from connectors.talks.did import DidTalks
from talks_contract.signatures import SIGNATURE_HEADER, sign

SECRET = "whsec-test"
TALK = {"id": "tlk_1", "object": "talk", "status": "done", "user_data": "script-1", "result_url": "http://r/"}
DONE = TalkRef("tlk_1", "done")


def backend(secret: str | None = SECRET, **options: Any) -> DidTalks:
    return DidTalks("http://talks.test", "k:s", webhook_secret=secret, **options)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(backend().verify_webhook) as started:
        yield started


def _post(
    url: str, talk: dict[str, Any] | bytes, signature: str | None = "sign", when: int | None = None
) -> int:
    body = talk if isinstance(talk, bytes) else json.dumps(talk).encode()
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        headers[SIGNATURE_HEADER] = sign(SECRET, body, timestamp=when)
    elif signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return httpx.post(url, content=body, headers=headers, timeout=5).status_code


async def _post_soon(url: str, talk: dict[str, Any], delay: float = 0.05, **kwargs: Any) -> int:
    await asyncio.sleep(delay)
    return await asyncio.to_thread(_post, url, talk, **kwargs)


def test_a_signed_delivery_wakes_the_waiter(receiver: WebhookReceiver) -> None:
    async def scenario() -> tuple[dict | None, int, float]:
        started = time.monotonic()
        sender = asyncio.create_task(_post_soon(receiver.url, TALK))
        talk = await receiver.wait("tlk_1", timeout=5)
        return talk, await sender, time.monotonic() - started

    talk, status, waited = asyncio.run(scenario())
    assert status == 200 and talk == DONE
    assert waited < 1.0  # woken by the delivery, not by the 5 s timeout


@pytest.mark.parametrize(
    "signature",
    [None, "t=1700000000,v1=" + "0" * 64, "garbage", sign("another-secret", json.dumps(TALK).encode())],
    ids=["missing", "wrong-mac", "malformed", "wrong-secret"],
)
def test_a_bad_signature_is_refused_and_nothing_delivered(receiver: WebhookReceiver, signature: str) -> None:
    assert _post(receiver.url, TALK, signature=signature) == 401
    assert receiver.delivered("tlk_1") is None
    assert asyncio.run(receiver.wait("tlk_1", timeout=0.1)) is None  # the caller falls back to polling


def test_a_stale_timestamp_is_refused(receiver: WebhookReceiver) -> None:
    assert _post(receiver.url, TALK, when=int(time.time()) - 301) == 401
    assert receiver.delivered("tlk_1") is None


def test_a_tampered_body_is_refused(receiver: WebhookReceiver) -> None:
    signed_for = sign(SECRET, json.dumps(TALK).encode())
    tampered = json.dumps({**TALK, "result_url": "http://evil/1"}).encode()
    assert _post(receiver.url, tampered, signature=signed_for) == 401
    assert receiver.deliveries == 0


def test_a_delivery_before_the_waiter_registers_is_kept(receiver: WebhookReceiver) -> None:
    assert _post(receiver.url, TALK) == 200
    started = time.monotonic()
    assert asyncio.run(receiver.wait("tlk_1", timeout=5)) == DONE
    assert time.monotonic() - started < 0.5


def test_a_repeated_delivery_is_the_same_event(receiver: WebhookReceiver) -> None:
    async def scenario() -> tuple[dict | None, dict | None]:
        first = await receiver.wait("tlk_1", timeout=0.01)  # registers, times out: nothing yet
        assert first is None
        statuses = [await asyncio.to_thread(_post, receiver.url, TALK) for _ in range(3)]
        assert statuses == [200, 200, 200]
        return await receiver.wait("tlk_1", timeout=1), await receiver.wait("tlk_1", timeout=1)

    assert asyncio.run(scenario()) == (DONE, DONE)
    assert receiver.deliveries == 3


def test_several_talks_wake_only_their_own_waiters(receiver: WebhookReceiver) -> None:
    other = {**TALK, "id": "tlk_2"}

    async def scenario() -> tuple[Any, ...]:
        sender = asyncio.create_task(_post_soon(receiver.url, other))
        results = await asyncio.gather(receiver.wait("tlk_1", timeout=0.5), receiver.wait("tlk_2", timeout=5))
        await sender
        return tuple(results)

    assert asyncio.run(scenario()) == (None, TalkRef("tlk_2", "done"))


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"status": "done"}', b'{"id": "tlk_1"}'])
def test_a_signed_body_that_is_not_a_talk_is_400(receiver: WebhookReceiver, body: bytes) -> None:
    assert _post(receiver.url, body) == 400
    assert receiver.deliveries == 0


def test_other_paths_are_404(receiver: WebhookReceiver) -> None:
    assert _post(receiver.url.replace("/talks-webhook", "/elsewhere"), TALK) == 404


def test_register_gives_a_wake_event_for_polling(receiver: WebhookReceiver) -> None:
    """The flow's shape: poll slowly, and let the webhook cut the pause short."""
    state = {"status": "started", "result_url": "https://results.test/tlk_1.mp4"}
    api = httpx.MockTransport(lambda request: httpx.Response(200, json={"id": "tlk_1", **state}))

    async def scenario() -> TalkResult:
        async def engine_finishes() -> int:
            await asyncio.sleep(0.1)
            state["status"] = "done"
            return await asyncio.to_thread(_post, receiver.url, TALK)

        async with backend(transport=api) as talks:
            wake = receiver.register("tlk_1")
            sender = asyncio.create_task(engine_finishes())
            result = await talks.wait("tlk_1", poll_interval=30, timeout=60, wake=wake)
            assert await sender == 200
            return result

    started = time.monotonic()
    assert asyncio.run(scenario()).status == "done"
    assert time.monotonic() - started < 2.0


def test_stop_frees_the_port() -> None:
    receiver = WebhookReceiver(backend().verify_webhook).start()
    url = receiver.url
    receiver.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, content=b"{}", timeout=2)


def test_without_a_secret_every_callback_is_refused() -> None:
    body = json.dumps(TALK).encode()
    with pytest.raises(WebhookRejected) as caught:
        backend(secret=None).verify_webhook({SIGNATURE_HEADER: sign("", body)}, body)
    assert caught.value.status == 401
    with WebhookReceiver(backend(secret=None).verify_webhook) as unsigned:
        assert _post(unsigned.url, TALK) == 401 and unsigned.deliveries == 0
