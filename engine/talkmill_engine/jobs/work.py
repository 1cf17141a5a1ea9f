"""One talk, processed in a worker: fetch inputs → speech → render → files → the talk's result fields.

Runs in worker processes only; the render modules are imported here, never by the API process.
"""

from __future__ import annotations

import io
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talkmill_engine.errors import AudioError, LogoError, SourceError
from talkmill_engine.fetch import FetchPolicy, fetch_bytes
from talkmill_engine.jobs.store import TalkRecord
from talkmill_engine.results import Results
from talks_contract.formats import DEFAULT_RESULT_FORMAT, PLACEHOLDER_LOGO_URL
from talks_contract.limits import MAX_AUDIO_BYTES, MAX_AUDIO_SECONDS, MAX_IMAGE_BYTES

MAX_LOGO_PIXELS = 4096 * 4096


@dataclass
class WorkContext:
    """What every talk of a worker shares: the loaded models, where files go, how to fetch."""

    results: Results
    policy: FetchPolicy
    renderer: Any  # talkmill_engine.render.talk.Renderer
    synthesizer: Any  # talkmill_engine.speech.synthesizer.Synthesizer


def load_context(results: Results, policy: FetchPolicy) -> WorkContext:
    """Loads the models (slow, once per worker process)."""
    from talkmill_engine.render.talk import Renderer
    from talkmill_engine.speech.catalogue import resolve_voice
    from talkmill_engine.speech.synthesizer import Synthesizer

    synthesizer = Synthesizer()
    # Only the default voice's engine (Kokoro) loads here; joe, asked for by its id, loads on its first talk
    # (~2 s) rather than cost every worker ~140 MB.
    synthesizer.warm(resolve_voice(None))
    return WorkContext(results, policy, Renderer(), synthesizer)


def process_talk(talk: TalkRecord, ctx: WorkContext) -> dict[str, Any]:
    """Renders a talk; the fields it gains at `done`. Raises EngineError subclasses for bad inputs."""
    from talkmill_engine.render.drivers import choose_driver
    from talkmill_engine.render.image import load_image
    from talkmill_engine.speech.audio import write_wav
    from talkmill_engine.speech.stream import SpeechStream

    started = time.monotonic()
    doc = talk.doc
    config = doc["config"]
    source = fetch_bytes(
        doc["source_url"], field="source_url", max_bytes=MAX_IMAGE_BYTES, policy=ctx.policy, error=SourceError
    )
    image = load_image(source)
    driver = choose_driver(doc.get("driver_url"), source)
    speech = make_speech(doc["script"], ctx)  # spoken while it is rendered
    if config.get("pad_audio"):
        speech = speech.padded(config["pad_audio"])
    logo = load_logo(config.get("logo"), ctx.policy)
    folder = ctx.results.folder(talk.id)
    video_path = folder / f"{secrets.token_urlsafe(24)}.{config.get('result_format', DEFAULT_RESULT_FORMAT)}"
    burned = None
    if config.get("subtitles_burn"):  # captions are laid out from every word's time: spoken before the frames
        whole = speech.collect()
        speech, burned = SpeechStream.of(whole), talk_cues(doc["script"], whole)
    result = ctx.renderer.render(image, speech, config, driver, video_path, logo, cues=burned)
    elapsed = time.monotonic() - started  # claim to finished file: what processing_fps measures
    speech = result.speech
    audio_path = folder / f"{secrets.token_urlsafe(24)}.wav"
    write_wav(speech, audio_path)
    destination = talk.job.get("result_destination")
    if destination:
        destination = ctx.results.copy_to(destination, Path(result.path), talk.id)
    result_url, audio_url = ctx.results.publish(talk.id, [Path(result.path), audio_path])
    return {
        "result_url": destination or result_url,
        "audio_url": audio_url,
        **publish_extras(talk, speech, result, ctx),
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


def publish_extras(talk: TalkRecord, speech: Any, result: Any, ctx: WorkContext) -> dict[str, Any]:
    """Our extensions of the talk: `poster_url` always, `subtitles` when `script.subtitles` asked for them."""
    from talkmill_engine.render.poster import encode_jpeg

    folder, fields = ctx.results.folder(talk.id), {}
    if result.poster is not None:
        poster_path = folder / f"{secrets.token_urlsafe(24)}.jpg"
        poster_path.write_bytes(encode_jpeg(result.poster))
        fields["poster_url"] = ctx.results.publish(talk.id, [poster_path])[0]
    if talk.doc["script"].get("subtitles"):
        fields["subtitles"] = publish_subtitles(talk, speech, ctx)
    return fields


def publish_subtitles(talk: TalkRecord, speech: Any, ctx: WorkContext) -> dict[str, Any]:
    """`{vtt_url, srt_url}`; `{reason}` instead when there is nothing to time captions by (not an error)."""
    from talkmill_engine.captions import to_srt, to_vtt

    cues = talk_cues(talk.doc["script"], speech)
    if not cues:
        return {"reason": no_captions_reason(talk.doc["script"])}
    folder, name = ctx.results.folder(talk.id), secrets.token_urlsafe(24)
    vtt, srt = folder / f"{name}.vtt", folder / f"{name}.srt"
    vtt.write_text(to_vtt(cues), encoding="utf-8")
    srt.write_text(to_srt(cues), encoding="utf-8")
    vtt_url, srt_url = ctx.results.publish(talk.id, [vtt, srt])
    return {"vtt_url": vtt_url, "srt_url": srt_url}


def talk_cues(script: dict[str, Any], speech: Any) -> list[Any]:
    """The captions of a talk's speech: its text (or an audio script's transcript) timed by its phones."""
    from talkmill_engine.captions import cues_from_speech
    from talkmill_engine.speech.text import plain_text

    text = script.get("input")
    if not text:
        return []
    return cues_from_speech(speech, plain_text(text, bool(script.get("ssml"))))


def no_captions_reason(script: dict[str, Any]) -> str:
    if script["type"] == "audio" and not script.get("input"):
        return "An audio script without a transcript (script.input) has no words to caption."
    return "The words could not be timed: the transcript did not align with the audio."


def make_speech(script: dict[str, Any], ctx: WorkContext) -> Any:
    """The talk's SpeechStream: text to be spoken with the resolved voice, or audio decoded here."""
    if script["type"] == "text":
        from talkmill_engine.speech.catalogue import local_voice
        from talkmill_engine.speech.text import plain_text
        from talks_contract.voices import parse_voice_request

        request = parse_voice_request(script.get("provider"))
        voice = local_voice(request)
        text = plain_text(script["input"], script.get("ssml", False))
        return ctx.synthesizer.stream(text, voice, request.prosody)
    from talkmill_engine.speech.audio import decode_audio
    from talkmill_engine.speech.stream import SpeechStream

    limits = {"max_bytes": MAX_AUDIO_BYTES, "policy": ctx.policy, "error": AudioError}
    data = fetch_bytes(script["audio_url"], field="script.audio_url", **limits)
    # stops decoding as soon as it is too long; phones from the transcript (our `input` extension) if any
    return SpeechStream.of(decode_audio(data, max_seconds=MAX_AUDIO_SECONDS, transcript=script.get("input")))


def load_logo(logo: dict[str, Any] | None, policy: FetchPolicy) -> np.ndarray | None:
    """The logo as RGBA uint8, or None; LogoError when it cannot be fetched or read."""
    if not logo or logo.get("url") in (None, PLACEHOLDER_LOGO_URL):
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
