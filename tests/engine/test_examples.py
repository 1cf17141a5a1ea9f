"""The overview's examples #1, #2, #4 and #5, posted as they are (only source_url points at a local
portrait), each rendered to an MP4 that decodes: H.264 + AAC, 512x512, as long as its audio (± 1 frame)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from talks_contract.signatures import verify
from tests.engine.helpers import StaticServer, WebhookReceiver, probe_video, wait_for, wav_seconds

pytestmark = pytest.mark.slow
FRAME = 0.04  # seconds, at 25 fps
WEBHOOK_SECRET = "whsec-test"  # what start_engine configures


def render(client: httpx.Client, body: dict) -> dict:
    created = client.post("/talks", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "created" and created.json()["object"] == "talk"
    done = wait_for(client, created.json()["id"], timeout=240)
    assert done["status"] == "done", done
    return done


def assert_plays(client: httpx.Client, talk: dict) -> None:
    """The result decodes with H.264 video and AAC audio, 512x512, within one frame of the talk's audio."""
    video = client.get(talk["result_url"], headers={"Authorization": ""})  # results need no key
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    facts = probe_video(video.content)
    assert (facts.video_codec, facts.audio_codec) == ("h264", "aac")
    assert (facts.width, facts.height) == (512, 512)
    audio = client.get(talk["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    speech_seconds = wav_seconds(audio.content)
    assert abs(facts.video_seconds - speech_seconds) <= FRAME, (facts, speech_seconds)
    assert abs(talk["duration"] - speech_seconds) <= FRAME
    metadata = talk["metadata"]
    assert metadata["num_frames"] == facts.frames and metadata["resolution"] == [512, 512]
    assert metadata["num_faces"] >= 1 and metadata["processing_fps"] > 0
    assert abs(metadata["size_kib"] - len(video.content) / 1024) < 1
    assert metadata["driver_url"].startswith("bank://") and "/driver-" in metadata["driver_url"]
    face = talk["face"]
    assert len(face["detection"]) == 4 and len(face["top_left"]) == 2 and face["size"] > 0
    assert 0 < face["detect_confidence"] <= 1
    assert talk["started_at"] <= talk["modified_at"] and talk["created_at"] <= talk["started_at"]


def test_example_1_default_call(client: httpx.Client, static_server: StaticServer) -> None:
    body = {"source_url": static_server.url("grace_hopper.jpg"), "script": {"type": "text", "input": "Hello world!"}}
    talk = render(client, body)
    assert_plays(client, talk)
    assert talk["config"]["result_format"] == "mp4" and talk["config"]["stitch"] is False
    assert talk["metadata"]["voice_id"] == "en-US-af_heart"  # D-ID's default is Jenny: a female neural voice
    # deleting a finished talk removes it and its files
    assert client.delete(f"/talks/{talk['id']}").status_code == 200
    assert client.get(talk["result_url"]).status_code == 404
    assert client.get(f"/talks/{talk['id']}").status_code == 404


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.close()


def test_example_2_webhook(client: httpx.Client, static_server: StaticServer, receiver: WebhookReceiver) -> None:
    body = {
        "source_url": static_server.url("astronaut.png"),
        "script": {"type": "text", "input": "Hello world!"},
        "webhook": receiver.url,
    }
    talk = render(client, body)
    signature, raw = receiver.wait(timeout=30)
    verify(WEBHOOK_SECRET, signature, raw)  # raises SignatureError unless signed with our secret
    delivered = json.loads(raw)
    assert delivered == client.get(f"/talks/{talk['id']}").json()  # the same body as GET
    assert delivered["status"] == "done" and delivered["webhook"] == receiver.url
    assert_plays(client, delivered)


def test_example_4_text_to_speech_with_a_microsoft_voice_and_style(
    client: httpx.Client, static_server: StaticServer
) -> None:
    body = {
        "source_url": static_server.url("grace_hopper.jpg"),
        "script": {
            "type": "text",
            "input": "Hello world!",
            "provider": {"type": "microsoft", "voice_id": "en-US-JennyNeural", "voice_config": {"style": "Cheerful"}},
        },
    }
    talk = render(client, body)
    assert_plays(client, talk)
    assert talk["script"]["provider"]["voice_config"] == {"style": "Cheerful"}  # echoed as asked
    assert talk["metadata"]["voice_id"] == "en-US-af_heart"  # Jenny: the closest local voice, female, en-US


def test_example_5_audio_script(client: httpx.Client, static_server: StaticServer) -> None:
    body = {"source_url": static_server.url("astronaut.png"),
            "script": {"type": "audio", "audio_url": static_server.url("speech.mp3")}}
    talk = render(client, body)
    assert_plays(client, talk)
    assert abs(talk["duration"] - 1.6) < 0.1  # the mp3's length (encoder padding aside)
    assert talk["metadata"].get("voice_id") is None  # nobody's voice: the caller's audio
