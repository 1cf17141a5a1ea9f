"""resume_crashed: crashed content_to_video deployment runs are run again, once each.

    find the deployment's Crashed flow runs not yet resumed → tag each → schedule it again

A flow run crashes when its process dies (a worker killed mid-run, a machine gone): nothing in Prefect
runs it again. A re-run is safe: the flow finds the talks already created (by the script ids in their
user_data) and the videos already stored, so it creates no duplicate and finishes what was left.

Decisions:
- The SAME flow run is scheduled again (what the UI's Retry does), not a new run with its parameters: its
  id, parameters and run folder stay, and whatever waits on it (bucket_watch's idempotency key: one run per
  dropped file) sees it run again and end, instead of a Crashed run beside a second one.
- Once each: the tag `talkmill-resumed` marks a resumed run; crashing again, it stays Crashed (something
  in it kills its process: a person should look).
- Two resumers at once (two watchers): the state change carries a transition id derived from the run's
  id, and Prefect refuses a second identical transition; the run is read again just before.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Scheduled

DEPLOYMENT = "content_to_video/content-to-video"
RESUMED_TAG = "talkmill-resumed"
LOOKED_AT = 200  # crashed runs read per look, newest first


@flow(name="resume_crashed")
def resume_crashed_runs(deployment: str = DEPLOYMENT) -> list[str]:
    """Schedule the deployment's crashed flow runs again, once each (a re-run creates no duplicate talk).

    Args:
        deployment: The content_to_video deployment whose runs to resume, as "<flow>/<deployment>".
    """
    return resume_crashed(deployment, get_run_logger())


def resume_crashed(deployment: str = DEPLOYMENT, log: logging.Logger | Any = None) -> list[str]:
    """The ids of the flow runs scheduled again."""
    log = log or logging.getLogger(__name__)
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        crashed = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED]))),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=LOOKED_AT,
        )  # fmt: skip
        return [str(run.id) for run in crashed if RESUMED_TAG not in run.tags and _resume(client, run, log)]


def _resume(client: Any, run: Any, log: logging.Logger | Any) -> bool:
    current = client.read_flow_run(run.id)  # another resumer may have been quicker
    if current.state_type != StateType.CRASHED or RESUMED_TAG in current.tags:
        return False
    client.update_flow_run(run.id, tags=[*current.tags, RESUMED_TAG])
    message = f"resumed by talkmill after it crashed ({current.state.message or 'no message'})"
    state = Scheduled(message=message)
    state.state_details.transition_id = uuid.uuid5(uuid.NAMESPACE_URL, f"talkmill-resume:{run.id}")
    result = client.set_flow_run_state(run.id, state)
    if result.status.value != "ACCEPT":
        return False
    log.info("flow run %s (%s) crashed; scheduled again with the same parameters", run.name, run.id)
    return True


if __name__ == "__main__":
    print(resume_crashed_runs())
