"""Every error the API answers has the body {kind, description, details}: engine errors as they are,
pydantic's and the Talks contract's (ContractViolation) as a ValidationError naming the field, what was
wrong and what is allowed."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from talkmill_engine.api.limits import BodyTooLarge
from talkmill_engine.errors import (
    BadRequestError,
    EngineError,
    NotFoundError,
    TooManyRequestsError,
    UnknownError,
    ValidationError,
    from_violation,
)
from talks_contract.errors import ContractViolation

log = logging.getLogger("talkmill_engine.api")

_UNION_TAGS = {"text", "audio"}  # discriminator values pydantic inserts into error locations
_ALLOWED_KEYS = ("expected", "min_length", "max_length", "ge", "le", "gt", "lt", "pattern", "discriminator")


def error_response(error: EngineError) -> JSONResponse:
    headers = {}
    if isinstance(error, TooManyRequestsError):
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="talkmill", Bearer'
    return JSONResponse(error.to_body(), status_code=error.status, headers=headers)


def field_path(loc: tuple[Any, ...]) -> str:
    """('body', 'script', 'text', 'input') → 'script.input'; list indices as [i]."""
    parts: list[str] = []
    items = list(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)
    for index, item in enumerate(items):
        if item in _UNION_TAGS and index > 0 and items[index - 1] == "script":
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def convert_validation_error(exc: RequestValidationError) -> EngineError:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        messages = [error.get("msg") for error in errors]
        return BadRequestError("The request body is not valid JSON.", {"errors": messages})
    problems = [_problem(error) for error in errors]
    first = problems[0]
    description = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    details: dict[str, Any] = dict(first)
    if len(problems) > 1:
        details["errors"] = problems
    return ValidationError(f"Invalid request: {description}", details)


def _problem(error: dict[str, Any]) -> dict[str, Any]:
    kind = error.get("type", "")
    field = field_path(tuple(error.get("loc", ())))
    problem: dict[str, Any] = {"field": field, "problem": error.get("msg", "")}
    if kind == "extra_forbidden":
        problem["problem"] = "unknown field"
    context = error.get("ctx") or {}
    allowed = {key: _plain(context[key]) for key in _ALLOWED_KEYS if key in context}
    if allowed:
        problem["allowed"] = allowed
    return problem


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path, asked of the router itself: Starlette's own Allow
    names only the first route's (POST /talks and GET /talks are two routes)."""
    routes = request.app.router.routes
    served = [method for method in HTTP_METHODS
              if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]
    return ", ".join(served)


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(EngineError)
    async def _engine_error(request: Request, exc: EngineError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(ContractViolation)
    async def _contract_violation(request: Request, exc: ContractViolation) -> JSONResponse:
        return error_response(from_violation(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(convert_validation_error(exc))

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(exc.error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(NotFoundError(f"No such resource: {request.url.path}"))
        error = EngineError(str(exc.detail))  # 405 and the like: the request's fault below 500
        error.kind = "BadRequestError" if exc.status_code < 500 else "UnknownError"
        error.status = exc.status_code
        response = error_response(error)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(UnknownError("Internal error.", type(exc).__name__))
