"""The backbone's tensors and who overrides them: the one place that changes their values and puts them back.

A loaded backbone is shared: every model built on it computes with its modules. A model that computes
with its own values of some of the backbone's tensors (the LayerNorms PEMT and HyperFormer train, the
whole encoder of a full fine-tuning) *overrides* them here; nothing else writes into the backbone.

    state = backbone.state
    state.override(model, names, trainable=True)  # the model's from now on, starting at the values as loaded
    state.assign(model, values)                   # saved values of the model's (overriding those it did not yet)
    state.values(model)                           # the model's values, to save
    state.park(model); state.resume(model)        # set aside and back (several fitted models in one process)
    state.release(model)                          # the tensors as loaded again, frozen

Tensors are named by their path in the backbone as loaded (`encoder.layer.0.output.LayerNorm.weight`);
the name a tensor has while a site wraps its module (`...LayerNorm.base_layer.weight`) resolves to it
too. One live model overrides a tensor at a time (a second is refused until the first is parked or
released), and the values put back are the ones the tensor had when it was first overridden, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import BackboneError


@dataclass
class _Override:
    names: list[str] = field(default_factory=list)
    parked: dict[str, tuple[torch.Tensor, bool]] | None = None  # name -> (value, requires_grad) while parked


class BackboneState:
    def __init__(self, model: nn.Module):
        self.modules: dict[str, nn.Module] = dict(model.named_modules())  # the module tree as loaded
        self.names: tuple[str, ...] = tuple(model.state_dict(keep_vars=True))
        self._model = model
        self._known = frozenset(self.names)
        self._paths = {id(module): path for path, module in self.modules.items()}
        self._overrides: dict[object, _Override] = {}
        self._live: dict[str, object] = {}  # name -> the model whose values the tensor holds now
        self._as_loaded: dict[str, torch.Tensor] = {}  # the values of every tensor some model overrides

    # -- names ---------------------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        """`name` as the backbone was loaded (a site's `base_layer` step left out), or a BackboneError."""
        if name in self._known:
            return name
        path, _, attr = name.rpartition(".")
        try:
            loaded = self._paths.get(id(self._model.get_submodule(path)))
        except AttributeError:
            loaded = None
        resolved = f"{loaded}.{attr}" if loaded else attr
        if loaded is None or resolved not in self._known:
            raise BackboneError(f"the backbone has no tensor {name!r} (its tensors are named as in "
                                f"{self.names[0]!r}); was the artifact made for another backbone?")
        return resolved

    def tensor(self, name: str) -> torch.Tensor:
        """The live tensor (parameter or buffer) called `name`."""
        path, _, attr = self.canonical(name).rpartition(".")
        return getattr(self.modules[path], attr)

    # -- overriding ----------------------------------------------------------------------------------
    def override(self, owner: object, names: Iterable[str], *, trainable: bool = False) -> None:
        """`owner` computes with its own values of `names` from now on, starting from the values they
        have; `trainable` sets whether those that are parameters train (also for names it overrides already)."""
        names = [self.canonical(n) for n in names]
        if not names:
            return
        self._check_free(owner, names)
        entry = self._overrides.setdefault(owner, _Override())
        if entry.parked is not None:
            raise ValueError("a parked model cannot override backbone tensors; resume it first")
        for name in names:
            if name not in self._live:
                if name not in self._as_loaded:  # else a parked model overrides it, and it holds that value now
                    self._as_loaded[name] = self.tensor(name).detach().clone()
                self._live[name] = owner
                entry.names.append(name)
            _set_trainable(self.tensor(name), trainable)

    @torch.no_grad()
    def assign(self, owner: object, values: Mapping[str, torch.Tensor]) -> None:
        """Copy `values` ({name: tensor}) into the tensors, which `owner` overrides from now on (frozen,
        where it did not override them yet)."""
        named = {self.canonical(n): value for n, value in values.items()}
        self.override(owner, [n for n in named if self._live.get(n) is not owner])
        for name, value in named.items():
            self.tensor(name).copy_(value)

    def values(self, owner: object) -> dict[str, torch.Tensor]:
        """Copies of the values `owner` computes with, in the backbone's order of tensors."""
        owned = set(self._overrides[owner].names) if owner in self._overrides else set()
        return {n: self.tensor(n).detach().clone() for n in self.names if n in owned}

    def park(self, owner: object) -> None:
        """Keep `owner`'s values aside and put the values as loaded back (`resume` undoes it)."""
        entry = self._overrides.get(owner)
        if entry is None or entry.parked is not None:
            return
        entry.parked = {n: (self.tensor(n).detach().clone(), self.tensor(n).requires_grad) for n in entry.names}
        self._restore(entry.names)

    @torch.no_grad()
    def resume(self, owner: object) -> None:
        """Put the values `park` kept aside back in the backbone."""
        entry = self._overrides.get(owner)
        if entry is None or entry.parked is None:
            return
        self._check_free(owner, entry.names)
        for name, (value, trainable) in entry.parked.items():
            self.tensor(name).copy_(value)
            _set_trainable(self.tensor(name), trainable)
            self._live[name] = owner
        entry.parked = None

    def release(self, owner: object) -> None:
        """`owner` overrides nothing any more: its tensors hold the values as loaded again, frozen."""
        entry = self._overrides.pop(owner, None)
        if entry is None:
            return
        if entry.parked is None:
            self._restore(entry.names)
        still_overridden = {n for other in self._overrides.values() for n in other.names}
        for name in entry.names:
            if name not in still_overridden:
                del self._as_loaded[name]

    # -- inside ----------------------------------------------------------------------------------------
    def _check_free(self, owner: object, names: Iterable[str]) -> None:
        taken = [n for n in names if self._live.get(n, owner) is not owner]
        if taken:
            holder = type(self._live[taken[0]]).__name__
            raise ValueError(f"backbone tensor {taken[0]!r} (and {len(taken) - 1} more) is overridden by another "
                             f"live model ({holder}); detach or park it first")

    @torch.no_grad()
    def _restore(self, names: Iterable[str]) -> None:
        for name in names:
            tensor = self.tensor(name)
            tensor.copy_(self._as_loaded[name])
            _set_trainable(tensor, False)
            self._live.pop(name, None)


def _set_trainable(tensor: torch.Tensor, trainable: bool) -> None:
    if isinstance(tensor, nn.Parameter):
        tensor.requires_grad_(trainable)
