"""How long a client the full queue turned away should wait: read from the queue's real drain rate.

The store admits a talk only while fewer than TALKMILL_ENGINE_MAX_QUEUE are created or started (counted
and inserted as one step); this module answers the 429's Retry-After.
"""

from __future__ import annotations

import math

from talkmill_engine.jobs.store import TalkStore

DRAIN_WINDOW_SECONDS = 300.0  # completions this recent say how fast the queue drains now
RETRY_AFTER_MIN, RETRY_AFTER_MAX = 1, 120  # seconds; the longest also when nothing drains at all


def retry_after_seconds(completed: int, span_seconds: float) -> int:
    """The mean time between the `completed` talks that ended over the last `span_seconds`: about when a
    place in the queue frees up. RETRY_AFTER_MAX when none ended (no worker, or all on long talks)."""
    if completed <= 0:
        return RETRY_AFTER_MAX
    interval = max(span_seconds, 1.0) / completed
    return min(RETRY_AFTER_MAX, max(RETRY_AFTER_MIN, math.ceil(interval)))


def retry_after(store: TalkStore) -> int:
    return retry_after_seconds(*store.recent_completions(DRAIN_WINDOW_SECONDS))
