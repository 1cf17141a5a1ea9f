"""Guarded fetching of talk inputs: the address guard (the contract's URL policy), caps, deadlines,
redirects, upload:// and s3://.

Real servers on 127.0.0.1 (a small http.server, and SeaweedFS for S3); httpx.MockTransport only where a
loopback server cannot stand in for a public host (pinning to the checked address, redirects off it).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from talkmill_engine import fetch
from talkmill_engine.errors import AudioError, SourceError, ValidationError
from talkmill_engine.fetch import FetchPolicy, check_url, fetch_bytes
from talkmill_engine.settings import EngineSettings

from talks_contract.limits import MAX_AUDIO_BYTES, MAX_IMAGE_BYTES
from talks_contract.urlpolicy import PUBLIC_ONLY, UrlPolicy
from tests.engine.helpers import LOOPBACK as LOOPBACK_NETWORKS
from tests.s3server import S3Server  # the `seaweedfs` fixture comes from tests/conftest.py

LOOPBACK = FetchPolicy(inputs=UrlPolicy.from_entries(LOOPBACK_NETWORKS), timeout=5.0)
GUARDED = FetchPolicy(timeout=5.0)
EVERYTHING = FetchPolicy(inputs=UrlPolicy.from_entries("0.0.0.0/0,::/0"), timeout=5.0)
PUBLIC_IP = "93.184.216.34"  # what a mocked resolver answers for a "public" name; never connected to


# -- a loopback HTTP server --------------------------------------------------------------------------------


@dataclass
class Served:
    base: str
    sent: dict[str, int]  # bytes written per path, to prove a client stopped reading early


def _handler(sent: dict[str, int]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            route, _, arg = self.path.strip("/").partition("/")
            getattr(self, f"route_{route}", self.route_missing)(arg)

        def route_file(self, size: str) -> None:
            self._head(200, {"Content-Length": size})
            self.wfile.write(b"x" * int(size))

        def route_endless(self, _: str) -> None:  # no Content-Length: the body ends only when we stop
            self._head(200, {})
            self._drip(b"y" * 65536, total=200 * 1024 * 1024, pause=0.0)

        def route_liar(self, _: str) -> None:  # declares 50 MB, then sends almost nothing and stalls
            self._head(200, {"Content-Length": str(50 * 1024 * 1024)})
            self._drip(b"z" * 10, total=10, pause=0.0)
            time.sleep(3)

        def route_slow(self, _: str) -> None:  # a byte every 0.1 s defeats any per-read timeout
            self._head(200, {"Content-Length": "30"})
            self._drip(b"s", total=30, pause=0.1)

        def route_hop(self, n: str) -> None:
            if int(n) == 0:
                return self.route_file("2")
            self._head(302, {"Location": f"/hop/{int(n) - 1}", "Content-Length": "0"})

        def route_gzip(self, _: str) -> None:
            self._head(200, {"Content-Encoding": "gzip", "Content-Length": "3"})
            self.wfile.write(b"abc")

        def route_to(self, target: str) -> None:  # /to/<host:port/path>: a redirect there
            self._head(302, {"Location": f"http://{target}", "Content-Length": "0"})

        def route_missing(self, _: str) -> None:
            self._head(404, {"Content-Length": "0"})

        def _head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def _drip(self, chunk: bytes, total: int, pause: float) -> None:
            try:
                while sent.get(self.path, 0) < total:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    sent[self.path] = sent.get(self.path, 0) + len(chunk)
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up: what a capped fetch should do

    return Handler


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    sent: dict[str, int] = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(sent))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Served(f"http://127.0.0.1:{server.server_address[1]}", sent)
    server.shutdown()
    server.server_close()


def _fetch(url: str, policy: FetchPolicy = LOOPBACK, max_bytes: int = MAX_IMAGE_BYTES, **kwargs) -> bytes:
    return fetch_bytes(
        url, field="source_url", max_bytes=max_bytes, policy=policy, error=SourceError, **kwargs
    )


# -- the address guard -------------------------------------------------------------------------------------

REFUSED_HOSTS = [
    "127.0.0.1", "127.1", "2130706433", "0x7f.1", "localhost", "0.0.0.0", "10.0.0.1", "172.16.5.4",
    "192.168.1.1", "169.254.1.1", "100.64.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255",
    "[::1]", "[::]", "[fe80::1]", "[fc00::1]", "[ff02::1]", "[::ffff:127.0.0.1]", "[::ffff:169.254.1.1]",
    "[::ffff:10.0.0.1]", "[2002:7f00:1::]", "[::127.0.0.1]", "[64:ff9b::7f00:1]",
]  # fmt: skip
METADATA_HOSTS = [  # cloud metadata and credential endpoints, in the spellings a resolver reads
    "169.254.169.254", "2852039166", "0xa9fea9fe", "169.254.43518", "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376",
    "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "[::169.254.169.254]", "[64:ff9b::a9fe:a9fe]",
    "[2002:a9fe:a9fe::1]", "[fd00:ec2::254]", "[FD00:EC2:0:0:0:0:0:0254]", "169.254.170.2", "[fd00:ec2::23]",
    "100.100.100.200", "168.63.129.16",
]  # fmt: skip


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_non_public_hosts_are_refused_by_default(host: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_url(f"http://{host}:8080/face.png", "source_url", GUARDED)
    assert caught.value.details["field"] == "source_url"
    assert "non-public address" in caught.value.description


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "[::1]", "[::ffff:127.0.0.1]", "localhost"])
def test_loopback_is_allowed_when_allowlisted(host: str) -> None:
    check_url(f"http://{host}:8080/face.png", "source_url", LOOPBACK)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "[::]", "[fe80::1]"])
def test_an_allowlist_allows_only_what_it_names(host: str) -> None:
    with pytest.raises(ValidationError, match="non-public address"):
        check_url(f"http://{host}:8080/face.png", "source_url", LOOPBACK)


@pytest.mark.parametrize("host", METADATA_HOSTS)
def test_cloud_metadata_is_refused_even_when_every_network_is_allowed(host: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_url(f"http://{host}/latest/meta-data/", "source_url", EVERYTHING)
    assert caught.value.details["field"] == "source_url"
    if "not a valid URL" not in caught.value.description:  # octal: httpx refuses to parse it at all
        assert "cloud metadata address" in caught.value.description


def test_a_name_for_metadata_is_refused_even_when_the_name_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "resolve_host", lambda host, port: ["169.254.169.254"])
    named = FetchPolicy(inputs=UrlPolicy.from_entries("metadata.google.internal,169.254.0.0/16"))
    with pytest.raises(ValidationError, match="cloud metadata address 169.254.169.254"):
        check_url("http://metadata.google.internal/computeMetadata/v1/", "source_url", named)


def test_an_allowlisted_host_name_may_resolve_to_private_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "resolve_host", lambda host, port: ["10.1.2.3"])
    intranet = FetchPolicy(inputs=UrlPolicy.from_entries("Portraits.Intranet.Example"))
    check_url("https://portraits.intranet.example./ada.png", "source_url", intranet)
    with pytest.raises(ValidationError, match="non-public address 10.1.2.3"):
        check_url("https://other.intranet.example/ada.png", "source_url", intranet)


def test_inputs_and_webhooks_have_their_own_allowlists() -> None:
    hooks_only = FetchPolicy(webhooks=UrlPolicy.from_entries("127.0.0.1"))
    check_url("http://127.0.0.1:9/talks-webhook", "webhook", hooks_only)
    with pytest.raises(ValidationError, match="non-public address"):
        check_url("http://127.0.0.1:9/face.png", "source_url", hooks_only)
    with pytest.raises(ValidationError, match="non-public address"):
        check_url("http://127.0.0.1:9/talks-webhook", "webhook", LOOPBACK)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "http://x/", "a b/c", "-bad-.example"])
def test_a_bad_allowlist_entry_is_refused_when_the_engine_starts(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed_input_networks"):
        EngineSettings(allowed_input_networks=entry)


def test_the_old_allow_private_setting_warns_and_allows_all_but_metadata() -> None:
    with pytest.warns(FutureWarning, match="TALKMILL_ENGINE_ALLOWED_INPUT_NETWORKS"):
        old = EngineSettings(allow_private_urls=True, allowed_webhook_networks="127.0.0.1")
    policy = FetchPolicy(inputs=old.input_url_policy, webhooks=old.webhook_url_policy)
    check_url("http://10.0.0.1/a.png", "source_url", policy)
    with pytest.raises(ValidationError, match="cloud metadata"):
        check_url("http://169.254.169.254/", "source_url", policy)
    with pytest.raises(ValidationError, match="non-public"):  # a list that is set wins over the old flag
        check_url("http://10.0.0.1/hook", "webhook", policy)


def test_the_embedded_engine_fetches_public_inputs_and_loopback_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    from talkmill_engine.local import URL_POLICY_ENV

    monkeypatch.setenv("TALKMILL_ENGINE_ALLOWED_INPUT_NETWORKS", "0.0.0.0/0")  # the caller's, overridden
    for name, value in URL_POLICY_ENV.items():
        monkeypatch.setenv(name, value)
    settings = EngineSettings()
    assert settings.input_url_policy == PUBLIC_ONLY
    policy = FetchPolicy(inputs=settings.input_url_policy, webhooks=settings.webhook_url_policy)
    check_url("http://127.0.0.1:8765/talks-webhook", "webhook", policy)
    check_url("http://[::1]:8765/talks-webhook", "webhook", policy)
    for url, field in [("http://127.0.0.1:9/face.png", "source_url"), ("http://10.0.0.1/hook", "webhook")]:
        with pytest.raises(ValidationError, match="non-public"):
            check_url(url, field, policy)


@pytest.mark.parametrize("url", ["http://93.184.216.34/a.png", "https://[2606:4700:4700::1111]/a.png"])
def test_public_addresses_pass(url: str) -> None:
    check_url(url, "source_url", GUARDED)  # IP literals: no DNS needed


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "javascript:alert(1)", "http:///"]
)
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_url(url, "audio_url", LOOPBACK)
    assert caught.value.details["field"] == "audio_url"
    assert "Allowed:" in caught.value.description


def test_a_name_with_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "resolve_host", lambda host, port: [PUBLIC_IP, "10.1.2.3"])
    with pytest.raises(ValidationError, match="10.1.2.3"):
        check_url("https://mixed.example/a.png", "source_url", GUARDED)


def test_an_unresolvable_host_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(fetch, "resolve_host", no_such_host)
    with pytest.raises(ValidationError, match="could not resolve"):
        check_url("https://nowhere.example/a.png", "source_url", GUARDED)


def test_fetch_connects_to_the_address_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name is resolved once per hop, and the request goes to that checked address."""
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])  # a second lookup would get the rebound, private answer
    monkeypatch.setattr(fetch, "resolve_host", lambda host, port: next(answers))
    seen: list[httpx.Request] = []

    def public_cdn(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=httpx.ByteStream(b"portrait"))  # unread, as on a wire

    body = _fetch("https://cdn.example/p.png", GUARDED, transport=httpx.MockTransport(public_cdn))
    assert body == b"portrait"
    [request] = seen
    assert request.url == httpx.URL(f"https://{PUBLIC_IP}/p.png")
    assert request.headers["host"] == "cdn.example"
    assert request.extensions["sni_hostname"] == "cdn.example"  # TLS verifies the name, not the IP


def test_a_redirect_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "resolve_host", lambda host, port: [host if host[0].isdigit() else PUBLIC_IP])
    seen: list[str] = []

    def redirector(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    with pytest.raises(SourceError, match="169.254.169.254") as caught:
        _fetch("https://cdn.example/p.png", GUARDED, transport=httpx.MockTransport(redirector))
    assert seen == [f"https://{PUBLIC_IP}/p.png"]  # the metadata address was never requested
    assert caught.value.details["field"] == "source_url"


# -- fetching over HTTP ------------------------------------------------------------------------------------


def test_fetch_returns_the_body(served: Served) -> None:
    assert _fetch(f"{served.base}/file/1234") == b"x" * 1234


def test_fetch_refuses_loopback_by_default(served: Served) -> None:
    with pytest.raises(SourceError, match="non-public address 127.0.0.1"):
        _fetch(f"{served.base}/file/10", GUARDED)


def test_size_cap_stops_a_body_without_content_length_mid_stream(served: Served) -> None:
    cap = 1024 * 1024
    with pytest.raises(SourceError, match="larger than 1 MB"):
        _fetch(f"{served.base}/endless/a", max_bytes=cap)
    time.sleep(0.2)  # let the server notice the hang-up
    assert served.sent["/endless/a"] < 40 * cap  # of 200 MB offered; socket buffers hold a few MB


def test_size_cap_honours_content_length_before_reading(served: Served) -> None:
    started = time.monotonic()
    with pytest.raises(AudioError, match="larger than 15 MB"):
        fetch_bytes(
            f"{served.base}/liar/b",
            field="audio_url",
            max_bytes=MAX_AUDIO_BYTES,
            policy=LOOPBACK,
            error=AudioError,
        )
    assert time.monotonic() - started < 1.0  # the server stalls for 3 s after 10 bytes: we never waited


def test_the_time_limit_is_total_not_per_read(served: Served) -> None:
    policy = FetchPolicy(inputs=LOOPBACK.inputs, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(SourceError, match="timed out after 1 s"):
        _fetch(f"{served.base}/slow/c", policy)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.5, elapsed  # the whole drip takes 3 s


def test_http_errors_name_the_host_and_status(served: Served) -> None:
    with pytest.raises(SourceError, match=r"127\.0\.0\.1 answered HTTP 404 Not Found"):
        _fetch(f"{served.base}/nothing-here")


def test_connection_refused_names_the_host() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, with nothing listening now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceError, match=r"could not fetch from 127\.0\.0\.1: ConnectError"):
        _fetch(f"http://127.0.0.1:{port}/a.png")


def test_compressed_bodies_are_refused(served: Served) -> None:
    with pytest.raises(SourceError, match="gzip"):
        _fetch(f"{served.base}/gzip/d")


def test_redirects_are_followed_up_to_five(served: Served) -> None:
    assert _fetch(f"{served.base}/hop/5") == b"xx"
    with pytest.raises(SourceError, match="more than 5 redirects"):
        _fetch(f"{served.base}/hop/6")


@pytest.fixture
def secret_server() -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.2 (another loopback address) holding a secret: (its base URL, paths it served)."""
    asked: list[str] = []

    class Secret(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b"TOP-SECRET!")

    server = ThreadingHTTPServer(("127.0.0.2", 0), Secret)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"127.0.0.2:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()


def test_every_redirect_hop_passes_the_allowlist(served: Served, secret_server: tuple[str, list[str]]) -> None:
    """127.0.0.1 is allowlisted, 127.0.0.2 is not: a redirect there is refused before it is requested."""
    secret, asked = secret_server
    only_one = FetchPolicy(inputs=UrlPolicy.from_entries("127.0.0.1/32"), timeout=5.0)
    with pytest.raises(SourceError, match="non-public address 127.0.0.2") as caught:
        _fetch(f"{served.base}/to/{secret}/key", only_one)
    assert asked == [] and "TOP-SECRET" not in caught.value.description
    assert _fetch(f"{served.base}/to/{secret}/key", LOOPBACK) == b"TOP-SECRET!"  # 127.0.0.0/8 allows it


def test_a_redirect_to_metadata_is_refused_whatever_is_allowed(served: Served) -> None:
    with pytest.raises(SourceError, match="cloud metadata address 169.254.169.254"):
        _fetch(f"{served.base}/to/169.254.169.254/latest/meta-data/iam/", EVERYTHING)


def test_fetch_works_from_inside_an_event_loop(served: Served) -> None:
    import asyncio

    async def inside() -> bytes:
        return _fetch(f"{served.base}/file/3")

    assert asyncio.run(inside()) == b"xxx"


# -- upload:// ---------------------------------------------------------------------------------------------


@pytest.fixture
def uploads(tmp_path: Path) -> FetchPolicy:
    (tmp_path / "images").mkdir()
    (tmp_path / "audios").mkdir()
    (tmp_path / "images" / "face.png").write_bytes(b"png bytes")
    (tmp_path / "audios" / "voice.wav").write_bytes(b"w" * 2000)
    (tmp_path / "secret.txt").write_bytes(b"not yours")
    (tmp_path / "images" / "link.png").symlink_to(tmp_path / "secret.txt")
    return FetchPolicy(uploads_dir=tmp_path)


def test_upload_urls_read_the_uploads_dir(uploads: FetchPolicy) -> None:
    check_url("upload://images/face.png", "source_url", uploads)
    assert _fetch("upload://images/face.png", uploads) == b"png bytes"
    assert _fetch("upload://audios/voice.wav", uploads) == b"w" * 2000


@pytest.mark.parametrize(
    "url",
    [
        "upload://images/../secret.txt",
        "upload://images/..%2Fsecret.txt",
        "upload://images/%2e%2e/secret.txt",
        "upload://images/link.png",
        "upload://secret.txt/x",
        "upload://images/",
        "upload://images/missing.png",
    ],
)
def test_upload_urls_cannot_leave_their_folder(uploads: FetchPolicy, url: str) -> None:
    with pytest.raises(ValidationError):
        check_url(url, "source_url", uploads)
    with pytest.raises(SourceError) as caught:
        _fetch(url, uploads)
    assert b"not yours" not in caught.value.description.encode()


def test_upload_urls_are_capped_and_need_an_uploads_dir(uploads: FetchPolicy) -> None:
    with pytest.raises(AudioError, match="larger than"):
        url = "upload://audios/voice.wav"
        fetch_bytes(url, field="audio_url", max_bytes=1000, policy=uploads, error=AudioError)
    with pytest.raises(ValidationError, match="not enabled"):
        check_url("upload://images/face.png", "source_url", FetchPolicy())


# -- s3:// against SeaweedFS on loopback -------------------------------------------------------------------


@pytest.fixture
def s3_policy(seaweedfs: S3Server, monkeypatch: pytest.MonkeyPatch) -> FetchPolicy:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return FetchPolicy(s3_endpoint_url=seaweedfs.endpoint_url, timeout=10.0)


def test_s3_urls_read_objects(seaweedfs: S3Server, s3_policy: FetchPolicy) -> None:
    seaweedfs.client().put_object(Bucket="inbox", Key="faces/ada.png", Body=b"p" * 5000)
    check_url("s3://inbox/faces/ada.png", "source_url", s3_policy)
    assert _fetch("s3://inbox/faces/ada.png", s3_policy) == b"p" * 5000


def test_s3_objects_are_capped(seaweedfs: S3Server, s3_policy: FetchPolicy) -> None:
    seaweedfs.client().put_object(Bucket="inbox", Key="big.wav", Body=b"a" * 5000)
    with pytest.raises(AudioError, match="larger than"):
        url = "s3://inbox/big.wav"
        fetch_bytes(url, field="audio_url", max_bytes=4999, policy=s3_policy, error=AudioError)


def test_s3_missing_objects_name_the_object(s3_policy: FetchPolicy) -> None:
    with pytest.raises(SourceError, match=r"s3://inbox/absent\.png: NoSuchKey"):
        _fetch("s3://inbox/absent.png", s3_policy)
    with pytest.raises(ValidationError, match="names no object"):
        check_url("s3://inbox", "source_url", s3_policy)


def test_environment_does_not_leak_a_proxy(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    # a proxy would connect for us to an address the guard never saw; the fetch ignores proxy variables
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on port 9 (discard)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _fetch(f"{served.base}/file/4") == b"xxxx"
