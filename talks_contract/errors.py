"""The Talks error body, and the one exception the contract's checks raise."""

from __future__ import annotations

from typing import Any


class ContractViolation(ValueError):
    """A value the Talks contract does not allow: which field, what was wrong, what is allowed.

    The engine answers it as a 400 ValidationError; the pipeline reports it as a refused input."""

    def __init__(self, field: str, problem: str, allowed: Any) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem, self.allowed = field, problem, allowed

    @property
    def details(self) -> dict[str, Any]:
        return {"field": self.field, "allowed": self.allowed}


def error_body(kind: str, description: str, details: Any = None) -> dict[str, Any]:
    """The body every Talks error answers with (and a failed talk carries under `error`)."""
    body: dict[str, Any] = {"kind": kind, "description": description}
    if details is not None:
        body["details"] = details
    return body
