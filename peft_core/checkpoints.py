"""Training checkpoints as safetensors + JSON (no pickle), written atomically."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_AT_FDCWD = -100  # renameat2: paths relative to the working folder
_RENAME_EXCHANGE = 2  # renameat2: swap the two paths


def atomic_directory_write(final: Path, write) -> None:
    """Call `write(tmp_dir)`, then put the finished folder at `final` in one atomic step.

    A process killed at any moment leaves `final` as it was or complete (and at most a `.tmp-*`
    folder beside it); a `write` that raises leaves `final` as it was and no `.tmp-*` folder. An
    existing `final` is exchanged with the new folder in one rename (`renameat2`'s RENAME_EXCHANGE;
    where the system lacks it, moved aside first). Writers of the same folder (parallel units
    preparing the same data, two pipelines on one store) take turns swapping it in under a file
    lock; the last one wins, and each was complete.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    parent = os.open(final.parent, os.O_RDONLY)  # lock the parent folder itself: no lock file left behind
    try:
        fcntl.flock(parent, fcntl.LOCK_EX)
        replaced = _swap_in(tmp, final)
    finally:
        os.close(parent)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


def _swap_in(new: Path, final: Path) -> Path | None:
    """Move the folder `new` to `final`; returns where the folder it replaced is now (None: there was none)."""
    if not final.exists():
        new.rename(final)
        return None
    if _exchange(new, final):
        return new
    old = new.with_name(new.name.replace(".tmp-", ".old-", 1))
    final.rename(old)
    new.rename(final)
    return old


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the system or file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # Linux (glibc 2.28+, musl)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


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
