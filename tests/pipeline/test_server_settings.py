"""flows.server_settings: what talkmill's entry points give the Prefect servers they start."""

from __future__ import annotations

import pytest

from flows.server_settings import TASK_RUN_RECORDER, batch_task_run_recording

BATCH_SIZE = "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"


def test_the_recorder_settings_fill_in_only_what_the_user_left_unset() -> None:
    env = {BATCH_SIZE: "7"}
    batch_task_run_recording(env)
    assert env == {BATCH_SIZE: "7", "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1"}


def test_prefect_reads_them_as_its_task_run_recorder_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A renamed setting would be ignored without a word: Prefect must read these names."""
    from prefect.settings import Settings

    for name, value in TASK_RUN_RECORDER.items():
        monkeypatch.setenv(name, value)
    recorder = Settings().server.services.task_run_recorder
    assert (recorder.batch_size, recorder.flush_interval) == (100, 1)
    assert float(recorder.flush_interval).is_integer()  # Prefect int()s it: 0.5 would flush without a pause
