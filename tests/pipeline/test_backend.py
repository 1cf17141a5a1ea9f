"""The backend wiring's choices about webhooks: when a run can receive them, and where it listens."""

from __future__ import annotations

import httpx
import pytest

from connectors.talks.backend import WEBHOOK_LISTEN_ENV, _receiver
from talkmill.config import BackendConfig
from talks_contract.signatures import SIGNATURE_HEADER, sign
from tests.engine.helpers import free_port


def test_a_remote_backend_without_a_reachable_receiver_polls() -> None:
    assert _receiver(BackendConfig(wait="webhook"), "secret", None, remote=True) is None
    assert _receiver(BackendConfig(wait="poll"), "secret", "https://tunnel.example/hook", remote=True) is None


def test_the_receiver_listens_where_it_is_told_and_advertises_the_public_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv(WEBHOOK_LISTEN_ENV, f"127.0.0.1:{port}")
    receiver = _receiver(BackendConfig(wait="webhook"), "secret", "https://tunnel.example/hook", remote=True)
    try:
        assert receiver.url == "https://tunnel.example/hook"
        body = b'{"id": "tlk_1", "object": "talk", "status": "done"}'
        answer = httpx.post(f"http://127.0.0.1:{port}/talks-webhook", content=body,
                            headers={SIGNATURE_HEADER: sign("secret", body)})
        assert answer.status_code < 300 and receiver.delivered("tlk_1")["status"] == "done"
    finally:
        receiver.stop()


def test_a_malformed_listen_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEBHOOK_LISTEN_ENV, "everywhere")
    with pytest.raises(ValueError, match="host:port"):
        _receiver(BackendConfig(wait="webhook"), "secret", "https://tunnel.example/hook", remote=True)
