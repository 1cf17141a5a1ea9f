"""The Talks API of a real engine process: auth, every kind of bad input, paging, delete, a full queue."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest

from tests.engine.helpers import KEY, Engine, StaticServer, free_port, start_engine, wait_for

TEXT = {"type": "text", "input": "Hello world!"}


def talk(source_url: str, **extra: object) -> dict:
    return {"source_url": source_url, "script": dict(TEXT), **extra}


def assert_error(response: httpx.Response, status: int, kind: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["kind"] == kind, body
    assert body["description"]
    if field is not None:
        assert body["details"]["field"] == field, body
    return body


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [f"Basic {KEY}", "Basic " + base64.b64encode(KEY.encode()).decode(), f"Bearer {KEY}"],
    ids=["basic-raw", "basic-base64", "bearer"],
)
def test_auth_accepts_the_key_as_basic_raw_basic_base64_and_bearer(engine: Engine, header: str) -> None:
    response = httpx.get(f"{engine.url}/talks", headers={"Authorization": header})
    assert response.status_code == 200, response.text
    assert "talks" in response.json()


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", "Basic wrong", "Basic " + base64.b64encode(b"tester:wrong").decode(), f"Token {KEY}"],
    ids=["missing", "bearer-wrong", "basic-wrong", "basic-base64-wrong", "other-scheme"],
)
def test_auth_refuses_a_wrong_or_missing_key_with_401(engine: Engine, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/talks"), ("POST", "/talks"), ("GET", "/talks/tlk_x"), ("GET", "/tts/voices")):
        response = httpx.request(method, f"{engine.url}{path}", headers=headers, json={})
        assert_error(response, 401, "AuthorizationError")


def test_health_openapi_and_docs_need_no_key(engine: Engine) -> None:
    health = httpx.get(f"{engine.url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    assert httpx.get(f"{engine.url}/live").json() == {"status": "ok"}
    spec = httpx.get(f"{engine.url}/openapi.json").json()
    assert {"/talks", "/talks/{talk_id}", "/images", "/audios", "/tts/voices", "/live"} <= set(spec["paths"])
    assert "TalkCreate" in spec["components"]["schemas"]
    assert httpx.get(f"{engine.url}/docs").status_code == 200


def test_the_openapi_schema_says_what_validation_enforces(engine: Engine) -> None:
    spec = httpx.get(f"{engine.url}/openapi.json").json()
    answers = {(path, method): set(operation["responses"])
               for path, operations in spec["paths"].items() for method, operation in operations.items()}
    assert not any("422" in codes for codes in answers.values())  # refusals are 400s with the Talks error body
    assert answers[("/talks", "post")] == {"201", "400", "401", "413", "429"}
    assert answers[("/health", "get")] == {"200", "503"}
    token = next(p for p in spec["paths"]["/talks"]["get"]["parameters"] if p["name"] == "token")
    assert token["schema"]["anyOf"][0]["pattern"]  # the paging token's form, not any string
    image = spec["paths"]["/images"]["post"]["requestBody"]
    assert image["required"] and "JPEG, PNG or WebP" in image["description"]


def test_voices_lists_the_local_voices(client: httpx.Client) -> None:
    voices = client.get("/tts/voices").json()
    ids = [voice["id"] for voice in voices]
    assert "en-US-joe" in ids
    assert all({"id", "name", "language"} <= set(voice) for voice in voices)


# -- synchronous bad input -------------------------------------------------------------------------

BAD_BODIES = {
    "missing-source": ({"script": TEXT}, "ValidationError", "source_url"),
    "missing-script": ({"source_url": "{astronaut}"}, "ValidationError", "script"),
    "unknown-field": ({**talk("{astronaut}"), "colour": "red"}, "ValidationError", "colour"),
    "unknown-script-field": (
        {"source_url": "{astronaut}", "script": {**TEXT, "speed": 2}}, "ValidationError", "script.speed"
    ),
    "text-2-chars": ({"source_url": "{astronaut}", "script": {"type": "text", "input": "Hi"}}, "ValidationError",
                     "script.input"),
    "text-40001-chars": (
        {"source_url": "{astronaut}", "script": {"type": "text", "input": "a" * 40_001}}, "ValidationError",
        "script.input",
    ),
    "script-type": ({"source_url": "{astronaut}", "script": {"type": "video"}}, "ValidationError", "script"),
    "unknown-voice": (
        {"source_url": "{astronaut}", "script": {**TEXT, "provider": {"type": "talkmill", "voice_id": "nobody"}}},
        "ValidationError", "script.provider.voice_id",
    ),
    "unknown-provider": (
        {"source_url": "{astronaut}", "script": {**TEXT, "provider": {"type": "acme", "voice_id": "x"}}},
        "ValidationError", "script.provider.type",
    ),
    "unknown-driver": ({**talk("{astronaut}"), "driver_url": "bank://wild/driver-9"}, "ValidationError",
                       "driver_url"),
    "file-source": (talk("file:///etc/passwd"), "ValidationError", "source_url"),
    "pad-audio-61": ({**talk("{astronaut}"), "config": {"pad_audio": 61}}, "ValidationError", "config.pad_audio"),
    "result-format": ({**talk("{astronaut}"), "config": {"result_format": "avi"}}, "ValidationError",
                      "config.result_format"),
    "expression": (
        {**talk("{astronaut}"), "config": {"driver_expressions": {"expressions": [
            {"start_frame": 0, "expression": "angry", "intensity": 0.5}]}}},
        "ValidationError", "config.driver_expressions.expressions[0].expression",
    ),
    "user-data-empty": ({**talk("{astronaut}"), "user_data": ""}, "ValidationError", "user_data"),
    "result-url-https": ({**talk("{astronaut}"), "result_url": "https://example.com/out.mp4"}, "ValidationError",
                         "result_url"),
    "webhook-ftp": ({**talk("{astronaut}"), "webhook": "ftp://127.0.0.1/hook"}, "ValidationError", "webhook"),
    "not-an-object": ([1, 2], "ValidationError", None),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_talk_bodies_answer_400_naming_the_field(client: httpx.Client, astronaut_url: str, name: str) -> None:
    body, kind, field = BAD_BODIES[name]
    body = _fill(body, astronaut_url)
    error = assert_error(client.post("/talks", json=body), 400, kind, field)
    if kind == "ValidationError" and field and field.startswith(("script.input", "config.pad_audio")):
        assert error["details"]["allowed"], error  # says what is allowed


def _fill(value: object, astronaut_url: str) -> object:
    if isinstance(value, dict):
        return {key: _fill(item, astronaut_url) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, astronaut_url) for item in value]
    return value.replace("{astronaut}", astronaut_url) if isinstance(value, str) else value


def test_malformed_json_is_a_bad_request(client: httpx.Client) -> None:
    response = client.post("/talks", content=b'{"source_url": "http://x', headers={"Content-Type": "application/json"})
    assert_error(response, 400, "BadRequestError")


def test_unknown_talk_is_404(client: httpx.Client) -> None:
    assert_error(client.get("/talks/tlk_doesnotexist"), 404, "NotFoundError")
    assert_error(client.delete("/talks/tlk_doesnotexist"), 404, "NotFoundError")


def test_the_talk_echoes_its_config_with_every_default(client: httpx.Client, static_server: StaticServer) -> None:
    body = talk(static_server.url("not-an-image.png"), user_data="row 7", name="echo")
    body["config"] = {"result_format": ".mp4", "stitch": False}
    created = client.post("/talks", json=body)
    assert created.status_code == 201, created.text
    assert set(created.json()) == {"id", "object", "created_by", "created_at", "status"}
    assert created.json()["id"].startswith("tlk_") and created.json()["status"] == "created"
    got = client.get(f"/talks/{created.json()['id']}").json()
    assert got["config"] == {
        "stitch": False, "result_format": "mp4", "fluent": False, "pad_audio": 0, "align_driver": True,
        "align_expand_factor": 0.3, "auto_match": True, "normalization_factor": 1, "motion_factor": 1,
        "sharpen": True,
    }
    assert (got["user_data"], got["name"], got["created_by"], got["user_id"]) == ("row 7", "echo", "tester", "tester")
    assert got["created_at"].endswith("Z") and len(got["created_at"]) == 24  # 2023-03-22T16:38:49.723Z


# -- engines with other settings -----------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Private addresses refused (the production default); no workers: nothing renders."""
    started = start_engine(tmp_path_factory.mktemp("strict") / "data", workers=0, allow_private=False)
    yield started
    started.kill()


def test_private_addresses_are_refused_unless_allowed(strict_engine: Engine, astronaut_url: str) -> None:
    with strict_engine.client() as http:
        assert_error(http.post("/talks", json=talk(astronaut_url)), 400, "ValidationError", "source_url")
        for address in ("http://10.0.0.1/a.png", "http://169.254.169.254/latest/meta-data", "http://[::1]/a.png"):
            assert_error(http.post("/talks", json=talk(address)), 400, "ValidationError", "source_url")
        hooked = talk("http://127.0.0.1:9/a.png", webhook="http://127.0.0.1:9/hook")
        assert_error(http.post("/talks", json=hooked), 400, "ValidationError")


def test_a_full_queue_answers_429_with_retry_after(tmp_path_factory: pytest.TempPathFactory, astronaut_url: str) -> None:
    tiny = start_engine(tmp_path_factory.mktemp("tiny") / "data", workers=0, max_queue="1")
    try:
        with tiny.client() as http:
            assert http.post("/talks", json=talk(astronaut_url)).status_code == 201
            response = http.post("/talks", json=talk(astronaut_url))
            assert_error(response, 429, "TooManyRequestsError")
            assert 1 <= int(response.headers["Retry-After"]) <= 120  # nothing drains: the longest wait
            # the queued talk is not ready: it cannot be deleted
            talk_id = http.get("/talks").json()["talks"][0]["id"]
            assert_error(http.delete(f"/talks/{talk_id}"), 409, "NotReadyError")
    finally:
        tiny.kill()


# -- uploads --------------------------------------------------------------------------------------


def test_uploads_store_images_and_audio_usable_as_urls(client: httpx.Client, static_server: StaticServer) -> None:
    image = (static_server.root / "grace_hopper.jpg").read_bytes()
    response = client.post("/images", files={"image": ("me.jpg", image, "image/jpeg")})
    assert response.status_code == 201, response.text
    uploaded = response.json()
    assert uploaded["url"].startswith("upload://images/") and uploaded["url"].endswith(".jpg")
    audio = (static_server.root / "speech.mp3").read_bytes()
    response = client.post("/audios", files={"audio": ("a.mp3", audio, "audio/mpeg")})
    assert response.status_code == 201, response.text
    assert response.json()["url"].startswith("upload://audios/")
    body = {"source_url": uploaded["url"], "script": {"type": "audio", "audio_url": response.json()["url"]}}
    assert client.post("/talks", json=body).status_code == 201
    missing = {**body, "source_url": "upload://images/img_nothere.png"}
    assert_error(client.post("/talks", json=missing), 400, "ValidationError", "source_url")


def test_an_mp4_without_an_audio_track_is_refused_as_such(client: httpx.Client) -> None:
    refused = assert_error(client.post("/audios", files={"audio": ("v.mp4", silent_mp4(), "video/mp4")}),
                           400, "ValidationError", "audio")
    assert "no audio track" in refused["description"]


def silent_mp4() -> bytes:
    """A second of grey H.264 video, and no audio stream."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def test_a_json_body_over_1_mb_is_refused_with_413(client: httpx.Client, astronaut_url: str) -> None:
    padded = {**talk(astronaut_url), "name": "x" * (2 * 1024 * 1024)}
    refused = assert_error(client.post("/talks", json=padded), 413, "InvalidFileSizeError")
    assert refused["details"]["max_bytes"] == 1024 * 1024

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    streamed = client.post("/talks", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(streamed, 413, "InvalidFileSizeError")
    assert client.post("/talks", json={**talk(astronaut_url), "name": "x" * 900}).status_code == 201


def test_uploads_refuse_the_wrong_type_and_size(client: httpx.Client) -> None:
    text = b"not an image at all" * 10
    assert_error(client.post("/images", files={"image": ("a.png", text, "image/png")}), 415, "UnsupportedMimeTypeError")
    assert_error(client.post("/audios", files={"audio": ("a.mp3", text, "audio/mpeg")}), 415, "UnsupportedMimeTypeError")
    huge = b"\x89PNG" + b"\x00" * (10 * 1024 * 1024)
    assert_error(client.post("/images", files={"image": ("a.png", huge, "image/png")}), 413, "InvalidFileSizeError")
    assert_error(client.post("/images", files={"picture": ("a.png", text, "image/png")}), 400, "ValidationError")


# -- asynchronous errors: the talk ends with status error ------------------------------------------


def test_bad_inputs_found_while_rendering_end_the_talk_with_their_kind(
    client: httpx.Client, engine: Engine, static_server: StaticServer
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/gone.png"  # nothing listens there
    cases = {
        "not-an-image": (talk(static_server.url("not-an-image.png")), "SourceError"),
        "bomb": (talk(static_server.url("bomb.png")), "SourceError"),
        "missing-file": (talk(static_server.url("nothere.png")), "SourceError"),
        "unreachable": (talk(closed), "SourceError"),
        "unreadable-audio": (
            {"source_url": static_server.url("grace_hopper.jpg"),
             "script": {"type": "audio", "audio_url": static_server.url("garbage.mp3")}},
            "AudioError",
        ),
        "no-face": (talk(static_server.url("grey.png")), "FaceError"),
    }
    ids = {}
    for name, (body, _) in cases.items():
        response = client.post("/talks", json=body)
        assert response.status_code == 201, (name, response.text)
        ids[name] = response.json()["id"]
    for name, (_, kind) in cases.items():
        ended = wait_for(client, ids[name])
        assert ended["status"] == "error", (name, ended)
        assert ended["error"]["kind"] == kind, (name, ended["error"])
        assert ended["error"]["description"]
        assert "result_url" not in ended
    health = httpx.get(f"{engine.url}/health").json()
    assert (health["status"], health["workers"]) == ("ok", 2)


# -- listing and deleting -------------------------------------------------------------------------


def test_listing_pages_through_every_talk_once(client: httpx.Client, static_server: StaticServer) -> None:
    for _ in range(3):
        assert client.post("/talks", json=talk(static_server.url("not-an-image.png"))).status_code == 201
    seen, token, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"token": token} if token else {})}
        page = client.get("/talks", params=params).json()
        pages += 1
        assert len(page["talks"]) <= 2
        seen += [t["id"] for t in page["talks"]]
        token = page.get("token")
        if token is None:
            break
    assert len(seen) == len(set(seen)) >= 3 and pages >= 2
    everything = client.get("/talks", params={"limit": 1000}).json()
    assert [t["id"] for t in everything["talks"]] == seen and "token" not in everything
    assert_error(client.get("/talks", params={"token": "garbage!"}), 400, "ValidationError", "token")
    assert_error(client.get("/talks", params={"limit": 0}), 400, "ValidationError", "limit")


def test_delete_is_refused_while_processing_and_removes_the_talk_after(
    client: httpx.Client, static_server: StaticServer
) -> None:
    slow = f"{static_server.base}/slow/3/not-an-image.png"  # the fetch keeps the talk busy for 3 s
    talk_id = client.post("/talks", json=talk(slow)).json()["id"]
    wait_for(client, talk_id, ("started",), timeout=30)
    assert_error(client.delete(f"/talks/{talk_id}"), 409, "NotReadyError")
    assert wait_for(client, talk_id)["status"] == "error"
    deleted = client.delete(f"/talks/{talk_id}")
    assert deleted.status_code == 200 and deleted.json()["id"] == talk_id
    assert_error(client.get(f"/talks/{talk_id}"), 404, "NotFoundError")


@pytest.mark.parametrize(
    "text, problem",
    [("Hello\x00world", "U+0000"), ("   \n\t   ", "no letter or digit"), ("?!… — ...", "no letter or digit")],
    ids=["nul", "whitespace", "punctuation"],
)
def test_text_that_cannot_be_spoken_is_refused_at_post(client: httpx.Client, astronaut_url: str,
                                                       text: str, problem: str) -> None:
    body = {"source_url": astronaut_url, "script": {"type": "text", "input": text}}
    refused = assert_error(client.post("/talks", json=body), 400, "ValidationError", "script.input")
    assert problem in refused["description"]


def test_a_paging_token_with_a_huge_number_is_a_400_not_a_500(client: httpx.Client) -> None:
    for seq in (str(2**64), "1" * 400, "-5", "٣"):  # past BIGINT, absurd, negative, a non-ASCII digit
        token = base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")
        assert_error(client.get("/talks", params={"token": token}), 400, "ValidationError", "token")


def test_a_wrong_method_answers_405_with_its_allow_header(client: httpx.Client) -> None:
    answer = client.put("/talks")
    assert answer.status_code == 405 and answer.json()["kind"] == "BadRequestError"
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
