"""Uploads (POST /images, /audios), results served at unguessable URLs, voices, health."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from talkmill_engine.api.auth import require_key
from talkmill_engine.api.intake import new_id
from talkmill_engine.api.schemas import ErrorBody, Upload
from talkmill_engine.errors import InvalidFileSizeError, NotFoundError, UnknownError, UnsupportedMimeTypeError
from talkmill_engine.fetch import MAX_AUDIO_BYTES, MAX_IMAGE_BYTES

_CHUNK = 1024 * 1024
IMAGE_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
# PyAV container names → the extension a file keeps.
AUDIO_EXTENSIONS = {"mp3": "mp3", "wav": "wav", "flac": "flac", "mov,mp4,m4a,3gp,3g2,mj2": "m4a"}
RESULT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "gif": "image/gif", "wav": "audio/wav"}
_TALK_ID = re.compile(r"^tlk_[A-Za-z0-9_-]{8,64}$")
_RESULT_FILE = re.compile(r"^[A-Za-z0-9_-]{16,64}\.(mp4|mov|gif|wav)$")

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 413, 415)}
uploads = APIRouter(tags=["uploads"], dependencies=[Depends(require_key)], responses=ERRORS)
public = APIRouter(tags=["service"])
voices = APIRouter(tags=["voices"], dependencies=[Depends(require_key)])


@uploads.post("/images", status_code=201, response_model=Upload)
async def upload_image(request: Request, image: UploadFile = File(...)) -> JSONResponse:
    data = await read_capped(image, MAX_IMAGE_BYTES, "image")
    extension = image_extension(data)
    return await save_upload(request, "images", new_id("img"), extension, data)


@uploads.post("/audios", status_code=201, response_model=Upload)
async def upload_audio(request: Request, audio: UploadFile = File(...)) -> JSONResponse:
    data = await read_capped(audio, MAX_AUDIO_BYTES, "audio")
    extension = audio_extension(data)
    return await save_upload(request, "audios", new_id("aud"), extension, data)


async def read_capped(upload: UploadFile, max_bytes: int, field: str) -> bytes:
    chunks, total = [], 0
    while chunk := await upload.read(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            limit = f"{max_bytes // (1024 * 1024)} MB"
            details = {"field": field, "max_bytes": max_bytes}
            raise InvalidFileSizeError(f"The {field} is larger than {limit}.", details)
        chunks.append(chunk)
    return b"".join(chunks)


def image_extension(data: bytes) -> str:
    """The extension of a JPEG/PNG/WebP file, read from its header only (no pixel is decoded)."""
    from PIL import Image

    allowed = {"allowed": list(IMAGE_EXTENSIONS)}
    try:
        image_format = Image.open(io.BytesIO(data)).format
    except Exception as e:  # Pillow raises many types for data that is not an image
        raise UnsupportedMimeTypeError("The upload is not an image.", allowed) from e
    if image_format not in IMAGE_EXTENSIONS:
        raise UnsupportedMimeTypeError(f"Unsupported image format {image_format}.", allowed)
    return IMAGE_EXTENSIONS[image_format]


def audio_extension(data: bytes) -> str:
    """The extension of an mp3/wav/flac/m4a/mp4 file that holds an audio stream, probed with PyAV."""
    import av

    allowed = {"allowed": ["mp3", "wav", "m4a", "flac", "mp4"]}
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            name = container.format.name
            has_audio = bool(container.streams.audio)
    except Exception as e:  # FFmpeg errors for data that is not media
        raise UnsupportedMimeTypeError("The upload is not an audio file.", allowed) from e
    if name not in AUDIO_EXTENSIONS or not has_audio:
        raise UnsupportedMimeTypeError(f"Unsupported audio format {name!r}.", allowed)
    return AUDIO_EXTENSIONS[name]


async def save_upload(request: Request, kind: str, upload_id: str, extension: str, data: bytes) -> JSONResponse:
    """Kept in the data dir (url upload://…), or, when results go to S3, beside them (url s3://…, as D-ID's
    uploads are): then every replica can fetch what any one of them was given."""
    settings = request.app.state.settings
    name = f"{upload_id}.{extension}"
    if settings.results_s3_url:
        url = await run_in_threadpool(_upload_to_s3, settings, f"uploads/{kind}/{name}", data)
    else:
        folder: Path = settings.uploads_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        url = f"upload://{kind}/{name}"
    return JSONResponse({"id": upload_id, "url": url}, status_code=201)


def _upload_to_s3(settings: Any, key: str, data: bytes) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    from talkmill_engine.results_s3 import location
    from talks_contract.s3 import s3_client

    bucket, key = location(settings.results_s3_url, key)
    try:
        s3_client(settings.s3_endpoint_url).put_object(Bucket=bucket, Key=key, Body=data)
    except (BotoCoreError, ClientError) as e:
        raise UnknownError(f"Could not store the upload in s3://{bucket}/{key}.", str(e)) from e
    return f"s3://{bucket}/{key}"


@public.get("/results/{talk_id}/{filename}", include_in_schema=False)
def read_result(talk_id: str, filename: str, request: Request) -> FileResponse:
    """A result or its audio. No auth: the random file name is the credential, like a presigned URL."""
    match = _RESULT_FILE.match(filename)
    path = request.app.state.settings.results_dir / talk_id / filename
    if not _TALK_ID.match(talk_id) or not match or not path.is_file():
        raise NotFoundError("No such result.")
    return FileResponse(path, media_type=RESULT_TYPES[match[1]])


@public.get("/health")
def health(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {"status": "ok", "workers": state.pool.alive_count(), "queued": state.store.count_active()}


@voices.get("/tts/voices")
def list_voices() -> JSONResponse:
    from talkmill_engine.render.voices import list_voices as local_voices

    return JSONResponse([_plain_voice(voice) for voice in local_voices()])


def _plain_voice(voice: Any) -> Any:
    return voice.to_dict() if hasattr(voice, "to_dict") else voice
