"""Real processes in tests: a free loopback port, waiting for a condition, a process started in its
own session (stopped by the `started` fixture of tests/integration/conftest.py)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:  # refused, or an HTTP error status
        return False


def wait_for(condition, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"{what} within {timeout} s\n{tail}")


def start_process(started, args, env, log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    with open(log, "w") as out:
        process = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    started[0].append(process)
    return process
