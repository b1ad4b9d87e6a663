"""Whether a RUNNING run's process still lives: every run is tagged with the process that owns it,
and runs left RUNNING by a killed process of this host are marked FAILED when a pipeline starts."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from mlflow.entities import RunStatus

if TYPE_CHECKING:  # tasks.tracking tags its runs with owner_tags()
    from tasks.tracking import Tracking

PID_TAG = "adapterflow.pid"  # the process that owns a RUNNING run; a dead owner means it was killed
HOST_TAG = "adapterflow.host"  # where that process runs: only there can its liveness be checked


def owner_tags() -> dict[str, str]:
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def mark_abandoned_runs_failed(tracking: Tracking) -> int:
    """Runs left RUNNING by a killed process of this host are marked FAILED; returns how many.

    Runs of live processes (another pipeline on the same store) and of other hosts are left alone.
    """
    exp_id = tracking.experiment_id(create=False)
    if exp_id is None:
        return 0
    client = tracking.client()
    host = socket.gethostname()
    stale = client.search_runs([exp_id], "attributes.status = 'RUNNING'", max_results=1000)
    mine = [r for r in stale if r.data.tags.get(PID_TAG) and r.data.tags.get(HOST_TAG, host) == host
            and not _pid_alive(int(r.data.tags[PID_TAG]))]
    for r in mine:
        client.set_terminated(r.info.run_id, RunStatus.to_string(RunStatus.FAILED))
    return len(mine)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
