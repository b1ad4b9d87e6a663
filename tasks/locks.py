"""Exclusive locks between processes (and threads) on files of a project home."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked(path: Path):
    """An exclusive lock between processes (and threads) on a file or folder, held for the block."""
    fd = os.open(path, os.O_RDONLY | (os.O_CREAT if not path.is_dir() else 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def unit_lock(home: Path, unit_key: str):
    """Held while one process looks a unit up and trains it: a second pipeline on the same store
    waits, then finds the unit finished instead of training it again in the same work folder."""
    locks = home / "work"
    locks.mkdir(parents=True, exist_ok=True)
    with locked(locks / f"{unit_key}.lock"):
        yield
