"""The OpenAPI schema, said as the API behaves: FastAPI's generated schema, less its 422 answers (every
refusal here is a 400 with the Talks error body), plus what a body may hold and the links that lead from
a created or listed talk to reading and deleting it (fuzzers follow them)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from talkmill_engine.api.limits import MAX_JSON_BYTES
from talks_contract.formats import AUDIO_FORMATS
from talks_contract.limits import MAX_AUDIO_BYTES, MAX_IMAGE_BYTES

_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")  # the schemas of its 422 body
_UPLOADS = {  # what validation enforces beyond "a file": read from the file itself, not from its name
    "/images": f"`image`: a JPEG, PNG or WebP image, at most {MAX_IMAGE_BYTES // 2**20} MB.",
    "/audios": f"`audio`: an {', '.join(AUDIO_FORMATS)} file with an audio track, at most "
               f"{MAX_AUDIO_BYTES // 2**20} MB.",
}  # fmt: skip
_TALK_BY_ID = {"ReadTalk": "read_talk", "DeleteTalk": "delete_talk"}  # links: name → operationId


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)  # fmt: skip
            app.openapi_schema = refined(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to adjust it


def refined(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            operation["responses"].pop("422", None)
        if path in _UPLOADS:
            operations["post"]["requestBody"]["description"] = _UPLOADS[path]
    for name in _FASTAPI_ONLY:
        schema["components"]["schemas"].pop(name, None)
    talks = schema["paths"]["/talks"]
    _link(talks["post"]["responses"]["201"], "$response.body#/id")
    _link(talks["get"]["responses"]["200"], "$response.body#/talks/0/id")
    talks["post"]["requestBody"]["description"] = f"At most {MAX_JSON_BYTES // 2**20} MB of JSON."
    return schema


def _link(response: dict[str, Any], talk_id: str) -> None:
    response["links"] = {
        name: {"operationId": operation_id, "parameters": {"talk_id": talk_id}}
        for name, operation_id in _TALK_BY_ID.items()
    }
