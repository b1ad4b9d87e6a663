"""Deterministic keys for units of work: the same settings, data and compute code give the same key.

What counts as compute code, and how it is versioned, is defined in one place:
`peft_core/compute_versions.py`. Settings that are None are left out, so adding an optional
setting (default None: "not used") does not change the keys of finished units.
"""

from __future__ import annotations

import hashlib
import json

from peft_core.compute_versions import versions_for


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value


def unit_key(kind: str, **parts) -> str:
    payload = json.dumps(_without_none({"kind": kind, "code": versions_for(kind), **parts}), sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"
