"""Run progress for whoever watches in this process (the CLI's progress bar): plain callbacks.

Prefect shows the same run in its UI; this is only the terminal's view, so it is best-effort and never
raises into the flow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

Listener = Callable[[str, dict[str, Any]], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def emit(event: str, **data: Any) -> None:
    for listener in list(_listeners):
        try:
            listener(event, data)
        except Exception:  # a broken progress bar must not fail a batch
            logging.getLogger("talkmill.progress").exception("progress listener failed")
