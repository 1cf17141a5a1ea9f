"""One talk, processed in a worker: fetch inputs → speech → render → files → the talk's result fields.

Runs in worker processes only; the render modules are imported here, never by the API process.
"""

from __future__ import annotations

import io
import mimetypes
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talkmill_engine.errors import AudioError, LogoError, SourceError, UnknownError
from talkmill_engine.fetch import MAX_AUDIO_BYTES, MAX_IMAGE_BYTES, FetchPolicy, fetch_bytes
from talkmill_engine.jobs.store import TalkRecord
from talkmill_engine.results_s3 import location
from talks_contract.s3 import s3_client

MAX_AUDIO_SECONDS = 600  # D-ID's limit for talks
MAX_LOGO_PIXELS = 4096 * 4096
PLACEHOLDER_LOGO = "ai"
RESULT_URL_SECONDS = 24 * 3600  # presigned result URLs (results in S3) stay valid this long, as D-ID's


@dataclass
class WorkContext:
    """What every talk of a worker shares: the loaded models, where files go, how to fetch."""

    results_dir: Path
    base_url: str  # results are served at {base_url}/results/<talk id>/<file>
    policy: FetchPolicy
    renderer: Any  # talkmill_engine.render.talk.Renderer
    synthesizer: Any  # talkmill_engine.render.tts.Synthesizer
    results_s3_url: str | None = None  # s3://bucket/prefix: results go there, any replica can serve them


def load_context(
    results_dir: Path, base_url: str, policy: FetchPolicy, results_s3_url: str | None = None
) -> WorkContext:
    """Loads the models (slow, once per worker process)."""
    from talkmill_engine.render.talk import Renderer
    from talkmill_engine.render.tts import Synthesizer

    synthesizer = Synthesizer()
    synthesizer.warm()
    return WorkContext(results_dir, base_url, policy, Renderer(), synthesizer, results_s3_url)


def process_talk(talk: TalkRecord, ctx: WorkContext) -> dict[str, Any]:
    """Renders a talk; the fields it gains at `done`. Raises EngineError subclasses for bad inputs."""
    from talkmill_engine.render.audio import write_wav
    from talkmill_engine.render.drivers import choose_driver
    from talkmill_engine.render.image import load_image

    started = time.monotonic()
    doc = talk.doc
    config = doc["config"]
    source = fetch_bytes(
        doc["source_url"], field="source_url", max_bytes=MAX_IMAGE_BYTES, policy=ctx.policy, error=SourceError
    )
    image = load_image(source)
    driver = choose_driver(doc.get("driver_url"), source)
    speech = make_speech(doc["script"], ctx)
    if config.get("pad_audio"):
        speech = speech.padded(config["pad_audio"])
    logo = load_logo(config.get("logo"), ctx.policy)
    folder = ctx.results_dir / talk.id
    folder.mkdir(parents=True, exist_ok=True)
    video_path = folder / f"{secrets.token_urlsafe(24)}.{config.get('result_format', 'mp4')}"
    result = ctx.renderer.render(image, speech, config, driver, video_path, logo)
    elapsed = time.monotonic() - started  # claim to finished file: what processing_fps measures
    audio_path = folder / f"{secrets.token_urlsafe(24)}.wav"
    write_wav(speech, audio_path)
    destination = talk.job.get("result_destination")
    if destination:
        destination = upload_result(Path(result.path), destination, talk.id, ctx.policy)
    result_url, audio_url = publish([Path(result.path), audio_path], talk.id, ctx)
    return {
        "result_url": destination or result_url,
        "audio_url": audio_url,
        "duration": round(result.duration, 3),
        "metadata": {
            "driver_url": driver.url,
            "mouth_open": bool(result.mouth_open),
            "num_faces": int(result.num_faces),
            "num_frames": int(result.num_frames),
            "processing_fps": result.num_frames / max(elapsed, 1e-6),
            "resolution": list(result.resolution),
            "size_kib": float(result.size_kib),
            "voice_id": speech.voice_id,
        },
        "face": result.face,
    }


def make_speech(script: dict[str, Any], ctx: WorkContext) -> Any:
    """The talk's Speech: synthesized from text with the resolved voice, or decoded from audio."""
    if script["type"] == "text":
        from talkmill_engine.render.tts import plain_text
        from talkmill_engine.render.voices import resolve_voice

        provider = script.get("provider")
        voice = resolve_voice(provider)
        voice_config = (provider or {}).get("voice_config")
        text = plain_text(script["input"], script.get("ssml", False))
        speech = ctx.synthesizer.synthesize(text, voice, voice_config)
        speech.voice_id = speech.voice_id or voice.id
        return speech
    from talkmill_engine.render.audio import decode_audio

    limits = {"max_bytes": MAX_AUDIO_BYTES, "policy": ctx.policy, "error": AudioError}
    data = fetch_bytes(script["audio_url"], field="script.audio_url", **limits)
    return decode_audio(data, max_seconds=MAX_AUDIO_SECONDS)  # stops decoding as soon as it is too long


def load_logo(logo: dict[str, Any] | None, policy: FetchPolicy) -> np.ndarray | None:
    """The logo as RGBA uint8, or None; LogoError when it cannot be fetched or read."""
    if not logo or logo.get("url") in (None, PLACEHOLDER_LOGO):
        return None
    from PIL import Image

    field = "config.logo.url"
    data = fetch_bytes(logo["url"], field=field, max_bytes=MAX_IMAGE_BYTES, policy=policy, error=LogoError)
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_LOGO_PIXELS:
            size = f"{image.width}x{image.height}"
            raise LogoError(f"The logo is {size} pixels.", {"field": field, "allowed": "at most 4096x4096"})
        return np.asarray(image.convert("RGBA"), dtype=np.uint8).copy()
    except LogoError:
        raise
    except Exception as e:  # Pillow raises many types for data that is not an image
        raise LogoError("The logo is not a readable image.", {"field": field}) from e


def publish(paths: list[Path], talk_id: str, ctx: WorkContext) -> list[str]:
    """The URLs of a talk's files: this engine's /results route, or, with results in S3, presigned GET
    URLs (any replica's talks readable without credentials) and the local copies removed."""
    if not ctx.results_s3_url:
        return [f"{ctx.base_url}/results/{talk_id}/{path.name}" for path in paths]
    from botocore.exceptions import BotoCoreError, ClientError

    client, urls = _s3_client(ctx.policy), []
    for path in paths:
        bucket, key = location(ctx.results_s3_url, talk_id, path.name)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})
        except (BotoCoreError, ClientError) as e:
            raise UnknownError(f"Could not store the result in s3://{bucket}/{key}.", str(e)) from e
        params = {"Bucket": bucket, "Key": key}
        urls.append(client.generate_presigned_url("get_object", Params=params, ExpiresIn=RESULT_URL_SECONDS))
    shutil.rmtree(paths[0].parent, ignore_errors=True)
    return urls


def _s3_client(policy: FetchPolicy) -> Any:
    return s3_client(policy.s3_endpoint_url, signature_version="s3v4")  # v4: presigned URLs that work everywhere


def upload_result(path: Path, destination: str, talk_id: str, policy: FetchPolicy) -> str:
    """Copies the result to s3://bucket/key (or s3://bucket/prefix/<talk id>.<ext>); its s3:// URL."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = destination.removeprefix("s3://").partition("/")
    if not key or key.endswith("/"):
        key = f"{key}{talk_id}{path.suffix}"
    try:
        client = _s3_client(policy)
        client.upload_file(str(path), bucket, key)
    except (BotoCoreError, ClientError) as e:
        raise UnknownError(f"Could not write the result to s3://{bucket}/{key}.", str(e)) from e
    return f"s3://{bucket}/{key}"
