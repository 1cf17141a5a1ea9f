"""Uploads (POST /images, /audios), owned by the caller; results served at unguessable URLs; voices."""

from __future__ import annotations

import io
import re
from typing import Any

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from talkmill_engine.api.auth import require_key
from talkmill_engine.api.intake import TALK_ID, new_id
from talkmill_engine.api.ownership import upload_filename
from talkmill_engine.api.schemas import ErrorBody, Upload
from talkmill_engine.errors import InvalidFileSizeError, NotFoundError, UnsupportedMimeTypeError, invalid
from talkmill_engine.speech.catalogue import list_voices as local_voices
from talks_contract.formats import AUDIO_FORMATS, RESULT_CONTENT_TYPES
from talks_contract.limits import MAX_AUDIO_BYTES, MAX_IMAGE_BYTES

_CHUNK = 1024 * 1024
IMAGE_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
# PyAV container names → the extension a file keeps.
AUDIO_EXTENSIONS = {"mp3": "mp3", "wav": "wav", "flac": "flac", "mov,mp4,m4a,3gp,3g2,mj2": "m4a"}
RESULT_TYPES = {**RESULT_CONTENT_TYPES, "wav": "audio/wav", "jpg": "image/jpeg",  # video, audio, poster
                "vtt": "text/vtt; charset=utf-8", "srt": "application/x-subrip; charset=utf-8"}  # captions
_RESULT_FILE = re.compile(rf"^[A-Za-z0-9_-]{{16,64}}\.({'|'.join(RESULT_TYPES)})$")

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 413, 415)}
uploads = APIRouter(tags=["uploads"], dependencies=[Depends(require_key)], responses=ERRORS)
public = APIRouter(tags=["service"])
voices = APIRouter(tags=["voices"], dependencies=[Depends(require_key)], responses={401: ERRORS[401]})


@uploads.post("/images", status_code=201, response_model=Upload)
async def upload_image(
    request: Request, image: UploadFile = File(...), caller: str = Depends(require_key)
) -> JSONResponse:
    data = await read_capped(image, MAX_IMAGE_BYTES, "image")
    extension = image_extension(data)
    return await save_upload(request, "images", new_id("img"), caller, extension, data)


@uploads.post("/audios", status_code=201, response_model=Upload)
async def upload_audio(
    request: Request, audio: UploadFile = File(...), caller: str = Depends(require_key)
) -> JSONResponse:
    data = await read_capped(audio, MAX_AUDIO_BYTES, "audio")
    extension = audio_extension(data)
    return await save_upload(request, "audios", new_id("aud"), caller, extension, data)


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

    allowed = {"allowed": list(AUDIO_FORMATS)}
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            name = container.format.name
            has_audio = bool(container.streams.audio)
    except Exception as e:  # FFmpeg errors for data that is not media
        raise UnsupportedMimeTypeError("The upload is not an audio file.", allowed) from e
    if name not in AUDIO_EXTENSIONS:
        raise UnsupportedMimeTypeError(f"Unsupported audio format {name!r}.", allowed)
    if not has_audio:  # a video without sound, most often: the format is fine, the content is not
        raise invalid("audio", "the file has no audio track", "a file with an audio track")
    return AUDIO_EXTENSIONS[name]


async def save_upload(
    request: Request, kind: str, upload_id: str, owner: str, extension: str, data: bytes
) -> JSONResponse:
    """Kept where results are kept (see talkmill_engine.results): with results in S3, every replica can
    fetch what any one of them was given. The name carries the owner's tag (api/ownership.py)."""
    results = request.app.state.results
    name = upload_filename(upload_id, owner, extension)
    url = await run_in_threadpool(results.store_upload, kind, name, data)
    return JSONResponse({"id": upload_id, "url": url}, status_code=201)


@public.get("/results/{talk_id}/{filename}", include_in_schema=False)
def read_result(talk_id: str, filename: str, request: Request) -> FileResponse:
    """A result or its audio. No auth: the random file name is the credential, like a presigned URL."""
    match = _RESULT_FILE.match(filename)
    named_well = bool(TALK_ID.match(talk_id) and match)  # never a path outside the results
    path = request.app.state.results.local_file(talk_id, filename) if named_well else None
    if path is None:
        raise NotFoundError("No such result.")
    return FileResponse(path, media_type=RESULT_TYPES[match[1]])


@voices.get("/tts/voices")
def list_voices() -> JSONResponse:
    return JSONResponse([voice.to_dict() for voice in local_voices()])
