"""The engine's one exception tree, shaped like the Talks API's error body {kind, description, details}.

Synchronous errors carry the HTTP status they answer with. Asynchronous ones (found while rendering)
end a talk with `status: error` and the same body under `error`.
"""

from __future__ import annotations

from typing import Any

from talks_contract.errors import ContractViolation, error_body


class EngineError(Exception):
    kind = "UnknownError"
    status = 500

    def __init__(self, description: str, details: Any = None) -> None:
        super().__init__(description)
        self.description = description
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return error_body(self.kind, self.description, self.details)


# Synchronous: answered as HTTP errors.
class ValidationError(EngineError):
    kind, status = "ValidationError", 400


def invalid(field: str, problem: str, allowed: Any) -> ValidationError:
    """A 400 naming the refused field and what is allowed there."""
    return ValidationError(f"Invalid {field}: {problem}.", {"field": field, "allowed": allowed})


def from_violation(violation: ContractViolation) -> ValidationError:
    """The engine's answer to a value the Talks contract refuses (used by the API's handler and workers)."""
    return invalid(violation.field, violation.problem, violation.allowed)


class BadRequestError(EngineError):
    kind, status = "BadRequestError", 400


class AuthorizationError(EngineError):
    kind, status = "AuthorizationError", 401


class NotFoundError(EngineError):
    kind, status = "NotFoundError", 404


class NotReadyError(EngineError):
    kind, status = "NotReadyError", 409


class InvalidFileSizeError(EngineError):
    kind, status = "InvalidFileSizeError", 413


class UnsupportedMimeTypeError(EngineError):
    kind, status = "UnsupportedMimeTypeError", 415


class TooManyRequestsError(EngineError):
    kind, status = "TooManyRequestsError", 429

    def __init__(self, description: str, retry_after: int, details: Any = None) -> None:
        super().__init__(description, details)
        self.retry_after = retry_after


# Asynchronous: end a talk with status "error".
class SourceError(EngineError):
    kind = "SourceError"


class FaceError(EngineError):
    kind = "FaceError"


class DriverError(EngineError):
    kind = "DriverError"


class LogoError(EngineError):
    kind = "LogoError"


class AudioError(EngineError):
    kind = "AudioError"


class UnknownError(EngineError):
    kind = "UnknownError"
