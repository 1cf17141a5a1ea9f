"""The pipeline fetches what content names through the contract's URL policy: http(s) sources, CSV `source`
cells and the dry run's presenter check. Real servers on loopback: 127.0.0.1 plays an allowlisted host,
127.0.0.2 an internal one holding a secret (loopback addresses: both on this machine, neither public)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from connectors import urlfetch
from connectors.urlfetch import fetch_url
from talkmill.config import FetchConfig, load_config
from talkmill.errors import ConfigError, CsvRowsError, SourceReadError
from talks_contract.limits import MAX_IMAGE_BYTES
from talks_contract.urlpolicy import PUBLIC_ONLY, UrlPolicy
from tasks.ingest import ingest_source
from tasks.plan import validate_plan
from tasks.scripts import plan_scripts
from tests.engine.helpers import png_bytes
from tests.pipeline.conftest import run_flow
from tests.pipeline.servers import Server, body, drip, redirect, serving

SECRET = b"TOP-SECRET: the payroll database password is hunter2."
ONE_HOST = UrlPolicy.from_entries("127.0.0.1/32")
PORTRAIT = png_bytes(64, 64)


@pytest.fixture(scope="module")
def secret() -> Iterator[Server]:
    """An internal server (127.0.0.2) whose answer must never leave it."""
    with serving({"/secret": body(SECRET, "text/plain"), "/face.png": body(PORTRAIT, "image/png")},
                 host="127.0.0.2") as server:
        yield server


@pytest.fixture(scope="module")
def public(secret: Server) -> Iterator[Server]:
    """The allowlisted host (127.0.0.1): an article, a portrait, a text named .png, and redirects."""
    routes = {
        "/article.md": body(b"# News\n\nThe harbour opens on Monday.\n", "text/markdown"),
        "/face.png": body(PORTRAIT, "image/png"),
        "/not-a-face.png": body(b"<html>Sorry, not found</html>", "image/png"),
        "/to-article.md": redirect("/article.md"),
        "/to-secret.md": redirect(f"http://{secret.hostport}/secret"),
        "/to-secret-face.png": redirect(f"http://{secret.hostport}/face.png", status=301),
        "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/iam/security-credentials/"),
        "/to-file": redirect("file:///etc/passwd"),
        "/endless": drip(b"z" * 65536, pause=0.0, total=200 * 1024 * 1024),
        "/slow": drip(b"s", pause=0.1, total=40),
    }
    with serving(routes) as server:
        yield server


def fetch(url: str, policy: UrlPolicy = ONE_HOST, **options: float) -> bytes:
    return fetch_url(url, policy=policy, max_bytes=int(options.get("max_bytes", MAX_IMAGE_BYTES)),
                     timeout=options.get("timeout", 5.0))


# -- the guard -------------------------------------------------------------------------------------------


def test_an_allowlisted_host_is_fetched_and_its_redirects_followed(public: Server) -> None:
    assert fetch(f"{public.base}/to-article.md").startswith(b"# News")


def test_loopback_is_refused_unless_allowlisted(public: Server) -> None:
    with pytest.raises(SourceReadError, match="non-public address 127.0.0.1") as caught:
        fetch(f"{public.base}/article.md", PUBLIC_ONLY)
    assert "TALKMILL_ALLOWED_NETWORKS" in str(caught.value) and not caught.value.transient


def test_a_redirect_to_an_internal_host_is_refused_before_it_is_asked(public: Server, secret: Server) -> None:
    asked_before = len(secret.asked)
    with pytest.raises(SourceReadError) as caught:
        fetch(f"{public.base}/to-secret.md")
    message = str(caught.value)
    assert message.startswith(f"{public.base}/to-secret.md: refused: redirected to http://{secret.hostport}/secret")
    assert "non-public address 127.0.0.2" in message and "SECRET" not in message
    assert len(secret.asked) == asked_before and not caught.value.transient


@pytest.mark.parametrize("everything", ["0.0.0.0/0,::/0", "169.254.0.0/16"])
def test_a_redirect_to_cloud_metadata_is_refused_whatever_is_allowed(public: Server, everything: str) -> None:
    policy = UrlPolicy.from_entries(f"127.0.0.1,{everything}")
    with pytest.raises(SourceReadError, match="cloud metadata address 169.254.169.254, which is never allowed"):
        fetch(f"{public.base}/to-metadata", policy)


def test_a_redirect_off_http_is_refused(public: Server) -> None:
    with pytest.raises(SourceReadError, match=r"redirected to file://, not http\(s\)"):
        fetch(f"{public.base}/to-file")


def test_the_size_cap_stops_an_endless_body(public: Server) -> None:
    with pytest.raises(SourceReadError, match="larger than the 1,048,576-byte limit"):
        fetch(f"{public.base}/endless", max_bytes=1024 * 1024)


def test_the_time_limit_is_for_the_whole_fetch_not_each_read(public: Server) -> None:
    started = time.monotonic()
    with pytest.raises(SourceReadError, match="no complete answer within 1 s") as caught:
        fetch(f"{public.base}/slow", timeout=1.0)  # a byte every 0.1 s: each read is quick, the whole is 4 s
    assert time.monotonic() - started < 2.0 and caught.value.transient


def test_the_request_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: one lookup per hop, and the connection is to that checked address."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # a second lookup would get the rebound answer
    monkeypatch.setattr(urlfetch, "resolve_host", lambda host, port: next(answers))
    seen: list[httpx.Request] = []

    def cdn(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"portrait")

    body_ = fetch_url("https://cdn.example/p.png", policy=PUBLIC_ONLY, max_bytes=100, timeout=5,
                      transport=httpx.MockTransport(cdn))
    assert body_ == b"portrait"
    [request] = seen
    assert request.url == httpx.URL("https://93.184.216.34/p.png") and request.headers["host"] == "cdn.example"
    assert request.extensions["sni_hostname"] == "cdn.example"


def test_a_proxy_in_the_environment_is_not_used(public: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    assert fetch(f"{public.base}/article.md").startswith(b"# News")


# -- the setting -----------------------------------------------------------------------------------------


def test_the_allowlist_comes_from_the_environment_or_the_config(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert FetchConfig().url_policy == PUBLIC_ONLY
    monkeypatch.setenv("TALKMILL_ALLOWED_NETWORKS", "127.0.0.1/32, intranet.example")
    assert load_config().fetch.url_policy == UrlPolicy.from_entries("intranet.example,127.0.0.1")
    config = tmp_path / "talkmill.yaml"
    config.write_text("fetch:\n  allowed_networks: [10.0.0.0/8]\n")
    assert load_config(config).fetch.allowed_networks == ["10.0.0.0/8"]  # the config's own wins
    monkeypatch.setenv("TALKMILL_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(ConfigError, match=r"'10.0.0.0/33' is neither a network .*TALKMILL_ALLOWED_NETWORKS"):
        load_config()


# -- a CSV `source` redirecting to the secret: refused, named by row and column, never stored --------------


def test_a_csv_source_redirecting_to_a_secret_is_refused_by_row(public: Server, secret: Server,
                                                                tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(f"id,source\nnews,{public.base}/to-article.md\nleak,{public.base}/to-secret.md\n")
    with pytest.raises(CsvRowsError) as caught:
        ingest_source.fn(str(rows), fetch_config=FetchConfig(allowed_networks=["127.0.0.1/32"]))
    [problem] = caught.value.problems
    assert (problem.line, problem.column) == (3, "source")
    assert "refused: redirected to" in problem.problem and "SECRET" not in str(caught.value)


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_whose_csv_source_redirects_to_a_secret_never_writes_it(public: Server, secret: Server,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKMILL_ALLOWED_NETWORKS", "127.0.0.1/32")
    rows = tmp_path / "rows.csv"
    rows.write_text(f"id,source\nnews,{public.base}/article.md\nleak,{public.base}/to-secret.md\n")
    out = tmp_path / "out"
    with pytest.raises(CsvRowsError, match=r"line 3, column 'source': .*refused: redirected to"):
        run_flow([rows], output=str(out), dry_run=True)
    written = [path.read_bytes() for path in out.rglob("*") if path.is_file()]
    assert not any(b"SECRET" in data or b"hunter2" in data for data in written)
    assert not list(out.rglob("manifest.jsonl"))  # refused before anything was planned


# -- the dry run's presenter check -----------------------------------------------------------------------


def _presenter_problems(presenter: str, fetch_config: FetchConfig) -> list[str]:
    from talkmill.models import Document, Section, SourceRef

    document = Document(id="note", title="Note", sections=[Section(title="A", text="Hello there, team.")],
                        source=SourceRef(type="text", uri="note.txt", id="note", checksum="0" * 64))
    scripts = plan_scripts(document, load_config(None, {"presenter": presenter}))
    return [p for p in validate_plan.fn(scripts, fetch_config) if "presenter" in p]


def test_the_dry_run_fetches_presenter_urls_through_the_policy(public: Server, secret: Server) -> None:
    allowed = FetchConfig(allowed_networks=["127.0.0.1/32"])
    assert _presenter_problems(f"{public.base}/face.png", allowed) == []
    [not_image] = _presenter_problems(f"{public.base}/not-a-face.png", allowed)
    assert "not a JPEG, PNG or WebP" in not_image
    asked_before = len(secret.asked)
    [internal] = _presenter_problems(f"{public.base}/to-secret-face.png", allowed)
    assert "refused: redirected to" in internal and "127.0.0.2" in internal
    assert len(secret.asked) == asked_before
    [by_default] = _presenter_problems(f"{public.base}/face.png", FetchConfig(allowed_networks=[]))
    assert "non-public address 127.0.0.1" in by_default


# -- the embedded engine: public inputs, loopback webhooks, whatever the caller's environment says --------


def test_the_embedded_engine_fetches_no_private_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from talkmill_engine.local import LocalEngine

    monkeypatch.setenv("TALKMILL_ENGINE_ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setenv("TALKMILL_ENGINE_ALLOWED_INPUT_NETWORKS", "0.0.0.0/0")
    script = {"type": "text", "input": "Hello there."}
    public_face = "http://93.184.216.34/face.png"  # an address literal: checked without DNS, never fetched
    with LocalEngine(tmp_path / "engine", workers=0) as engine, httpx.Client(
        base_url=engine.url, headers={"Authorization": f"Bearer {engine.key}"}, timeout=10
    ) as http:
        private = http.post("/talks", json={"source_url": "http://127.0.0.1:9/face.png", "script": script})
        assert private.status_code == 400 and "non-public address 127.0.0.1" in private.json()["description"]
        hooked = {"source_url": public_face, "script": script, "webhook": "http://127.0.0.1:9/talks-webhook"}
        assert http.post("/talks", json=hooked).status_code == 201  # its own run's receiver: loopback
        elsewhere = {**hooked, "webhook": "http://10.0.0.1/hook"}
        assert http.post("/talks", json=elsewhere).status_code == 400
