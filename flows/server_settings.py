"""Settings for a Prefect server that a talkmill entry point starts (Prefect's temporary API, for a run with
no PREFECT_API_URL; talkmill's own under .talkmill/prefect). They go into the environment before that
server starts: it is a subprocess and reads them from there. A setting the user made wins; a server someone
else runs keeps its own.

Nothing here imports Prefect, so a CLI can call it before Prefect is imported. Called by `talkmill run` and
`talkmill serve` (run_cli.quiet_prefect), `python -m flows.content_to_video` and bench/pipeline_overhead.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# The task-run recorder builds task runs from the client's events (3 a task run: Pending, Running, Completed).
# Prefect's default batch of 1 writes each event in its own transaction. Measured with Prefect's temporary
# API, 500 talks (bench/pipeline_overhead's flow side): the server spent 33-39 ms of CPU a talk, half the
# flow's, and fell behind: stopped with the run, it had recorded 397 of the 505 task runs, 33 still Running.
# In batches of up to 100, flushed at least every second: 14-19 ms a talk, all 505 recorded Completed, and
# a task run's state reaches the UI within a second. The interval is whole seconds: Prefect int()s it, and
# 0.5 becomes a flush loop that never sleeps. (A larger event-persister batch saved ~2 ms more but lost
# ~30 events when the temporary API stopped: left at Prefect's default.)
TASK_RUN_RECORDER = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def batch_task_run_recording(env: MutableMapping[str, str] = os.environ) -> None:
    """Before a server starts (its environment: this process's by default): the recorder settings above,
    unless set already."""
    for name, value in TASK_RUN_RECORDER.items():
        env.setdefault(name, value)
