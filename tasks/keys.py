"""Deterministic keys for units of work: the same config, data and code give the same key."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import peft_core


@cache
def code_version() -> str:
    """A digest of the method library's source: changing training code invalidates cached units."""
    root = Path(peft_core.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def unit_key(kind: str, **parts) -> str:
    payload = json.dumps({"kind": kind, "code": code_version(), **parts}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"
