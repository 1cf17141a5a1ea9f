"""The backend wiring (connectors.talks.backend): which class `backend.kind` picks, where it is, when a run
can receive webhooks and where it listens, and a refused key at the start of a run."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from connectors.talks import BACKENDS, needs_local_engine
from connectors.talks.backend import (
    WEBHOOK_LISTEN_ENV,
    WEBHOOK_SECRET_ENV,
    WEBHOOK_URL_ENV,
    Backend,
    _Endpoint,
    _receiver,
    open_backend,
)
from connectors.talks.did import DidTalks, TalkmillTalks
from talkmill.config import BackendConfig, load_config
from talkmill.errors import ConfigError, InputError, TalksRefusedError
from talks_contract.signatures import SIGNATURE_HEADER, sign
from tests.engine.helpers import free_port
from tests.pipeline.test_talks_client import FakeTalks, fake_app, serve

TUNNEL = "https://tunnel.example/hook"


def remote(public_url: str | None = TUNNEL, secret: str | None = "secret") -> _Endpoint:
    return _Endpoint("http://talks.test", "k:s", secret, public_url, local=False)


def test_the_kind_picks_the_class_and_an_unknown_kind_is_refused_at_load() -> None:
    assert BACKENDS == {"talkmill": TalkmillTalks, "d-id": DidTalks}
    assert load_config(None, {"backend": {"kind": "d-id"}}).backend.kind == "d-id"
    with pytest.raises(ConfigError, match=r"backend.kind: unknown Talks backend; allowed: talkmill, d-id"):
        load_config(None, {"backend": {"kind": "heygen"}})


def test_only_our_engine_without_a_url_is_started_locally() -> None:
    assert needs_local_engine(BackendConfig())
    assert not needs_local_engine(BackendConfig(url="http://engine:8000"))
    assert not needs_local_engine(BackendConfig(kind="d-id"))


def test_d_id_without_a_url_is_d_ids_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKMILL_TALKS_KEY", "user:pass")

    async def opened() -> tuple[type, str]:
        async with open_backend(BackendConfig(kind="d-id", wait="poll")) as backend:
            return type(backend.talks), str(backend.talks.http.base_url)

    assert asyncio.run(opened()) == (DidTalks, "https://api.d-id.com/")


def test_a_remote_backend_without_a_reachable_receiver_polls() -> None:
    talks = TalkmillTalks("http://talks.test")
    assert _receiver(BackendConfig(wait="webhook"), talks, remote(public_url=None)) is None
    assert _receiver(BackendConfig(wait="webhook"), talks, remote(secret=None)) is None
    assert _receiver(BackendConfig(wait="poll"), talks, remote()) is None


def test_the_receiver_listens_where_it_is_told_and_advertises_the_public_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv(WEBHOOK_LISTEN_ENV, f"127.0.0.1:{port}")
    talks = TalkmillTalks("http://talks.test", webhook_secret="secret")
    receiver = _receiver(BackendConfig(wait="webhook"), talks, remote())
    try:
        assert receiver.url == TUNNEL
        body = b'{"id": "tlk_1", "object": "talk", "status": "done"}'
        answer = httpx.post(f"http://127.0.0.1:{port}/talks-webhook", content=body,
                            headers={SIGNATURE_HEADER: sign("secret", body)})
        assert answer.status_code < 300 and receiver.delivered("tlk_1").status == "done"
    finally:
        receiver.stop()


@pytest.mark.parametrize("value", ["everywhere", "127.0.0.1", ":8765", "host:port", "0.0.0.0:99999"])
def test_a_malformed_listen_address_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(WEBHOOK_LISTEN_ENV, value)
    expected = rf"\${WEBHOOK_LISTEN_ENV} must be host:port, e\.g\. 0\.0\.0\.0:8765"
    with pytest.raises(ConfigError, match=expected):
        _receiver(BackendConfig(wait="webhook"), TalkmillTalks("http://talks.test"), remote())


def test_a_listen_address_in_use_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv(WEBHOOK_LISTEN_ENV, f"127.0.0.1:{taken.getsockname()[1]}")
        with pytest.raises(ConfigError, match=rf"\${WEBHOOK_LISTEN_ENV}: cannot listen on 127\.0\.0\.1:"):
            _receiver(BackendConfig(wait="webhook"), TalkmillTalks("http://talks.test"), remote())


def test_d_id_calls_back_only_on_https(monkeypatch: pytest.MonkeyPatch) -> None:
    """D-ID's webhook is a SecuredUrl: an http tunnel would fail every create, so the run refuses it."""
    did = DidTalks("http://talks.test", webhook_secret="secret")
    with pytest.raises(ConfigError, match=rf"\${WEBHOOK_URL_ENV} 'http://tunnel.example/hook'.*https://"):
        _receiver(BackendConfig(kind="d-id"), did, remote(public_url="http://tunnel.example/hook"))
    receiver = _receiver(BackendConfig(kind="d-id"), did, remote())
    assert receiver is not None and receiver.url == TUNNEL
    receiver.stop()


def test_webhook_variables_are_the_documented_ones() -> None:
    assert (WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV, WEBHOOK_LISTEN_ENV) == (
        "TALKMILL_TALKS_WEBHOOK_SECRET", "TALKMILL_TALKS_WEBHOOK_URL", "TALKMILL_TALKS_WEBHOOK_LISTEN")


@pytest.mark.parametrize("kind", ["talkmill", "d-id"])
def test_a_refused_key_at_the_start_of_a_run_is_a_refusal_of_the_run(kind: str) -> None:
    """401 on the run's first call (the existing-talks index), from a real server: TalksRefusedError, an
    InputError the CLI prints (exit 2), naming the variable that holds the key."""
    state = FakeTalks()
    with serve(fake_app(state)) as (api,):

        async def index() -> None:
            config = BackendConfig(kind=kind, url=api)
            async with BACKENDS[kind](api, "wrong:key") as talks:
                await Backend(talks, config).index_existing({"scr_1"})

        with pytest.raises(TalksRefusedError) as caught:
            asyncio.run(index())
    assert isinstance(caught.value, InputError)
    message = str(caught.value)
    assert message.startswith("the Talks API refused the key (401 AuthorizationError: bad key)")
    assert "$TALKMILL_TALKS_KEY" in message and not state.bodies
