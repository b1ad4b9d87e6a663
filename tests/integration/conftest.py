"""Fixtures of the tests that start real processes."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest


@pytest.fixture
def started():
    """Processes (own sessions) the test starts, and process groups they start: all are stopped at
    the end, also when the test fails."""
    processes, groups = [], []
    yield processes, groups
    for process in reversed(processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
