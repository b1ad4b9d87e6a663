"""Mixed precision: which precision a device computes natively, and the autocast block for it.

`bf16` runs the forward pass (and so the backward) under `torch.autocast` in bfloat16; weights,
optimiser state, artifacts, losses and metrics stay fp32. `auto` picks bf16 where the device has
native bf16 arithmetic (a CUDA device that supports it; a CPU with AVX-512 BF16 or AMX, read from
the CPU's flags, not guessed from its vendor) and fp32 elsewhere, where emulated bf16 is slower.

torch is imported by the functions that use it: the config (`configs.TrainConfig`) reads the
precision names without loading torch.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path
from typing import Literal, get_args

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo does not exist."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@cache
def native_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & NATIVE_BF16_CPU_FLAGS)


def resolve_precision(precision: str, device_type: str | None = None) -> Literal["bf16", "fp32"]:
    """The precision a unit actually runs in: `auto` becomes bf16 or fp32 for the device."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device_type or default_device()) else "fp32"
    return precision  # type: ignore[return-value]


def autocast(precision: str, device_type: str) -> AbstractContextManager:
    """The block in which a forward pass runs: bf16 autocast, or a no-op for fp32."""
    import torch

    resolved = resolve_precision(precision, device_type)
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=resolved == "bf16")
