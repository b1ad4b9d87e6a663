"""Training checkpoints as safetensors + JSON (no pickle), written atomically."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def atomic_directory_write(final: Path, write) -> None:
    """Call `write(tmp_dir)`, then move the finished folder to `final` in one rename.

    A process killed mid-write leaves only a `.tmp-*` folder behind, never a partial `final`.
    Writers of the same folder (parallel units preparing the same data, two pipelines on one
    store) take turns swapping it in under a file lock; the last one wins, and each was complete.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = final.parent / f".tmp-{final.name}-{token}"
    tmp.mkdir()
    write(tmp)
    old = final.parent / f".old-{final.name}-{token}"
    parent = os.open(final.parent, os.O_RDONLY)  # lock the parent folder itself: no lock file left behind
    try:
        fcntl.flock(parent, fcntl.LOCK_EX)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
    finally:
        os.close(parent)
    shutil.rmtree(old, ignore_errors=True)


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {f"{idx}.{key}": value for idx, slot in state["state"].items() for key, value in slot.items()}
    return {k: v.contiguous() for k, v in tensors.items()}, {"param_groups": state["param_groups"]}


def optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        idx, _, name = key.partition(".")
        slots.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, weights: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, state: dict) -> None:
    def write(tmp: Path) -> None:
        save_file({k: v.detach().contiguous() for k, v in weights.items()}, tmp / "trainable.safetensors")
        opt_tensors, opt_meta = optimizer_to_files(optimizer)
        save_file(opt_tensors, tmp / "optimizer.safetensors")
        (tmp / "trainer_state.json").write_text(json.dumps({**state, "optimizer": opt_meta}, indent=1))

    atomic_directory_write(folder, write)


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict] | None:
    """(weights, optimizer tensors, state) of a complete checkpoint, or None if there is none."""
    folder = Path(folder)
    if not (folder / "trainer_state.json").exists():
        return None
    state = json.loads((folder / "trainer_state.json").read_text())
    return load_file(folder / "trainable.safetensors"), load_file(folder / "optimizer.safetensors"), state
