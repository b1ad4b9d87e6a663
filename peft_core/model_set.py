"""Many fitted models over one backbone: rows of mixed targets answered by one process.

    models = FittedModelSet({"rte/scalearn": "fits/rte-scalearn", "mrpc/adapter": "fits/mrpc"})
    models.predict([{"model": "rte/scalearn", "sentence1": "...", "sentence2": "..."}, ...])

Rows are grouped by their `model` (or `task`) field; each group runs as batched passes of its
model and the answers come back in the rows' order. One model is on the backbone at a time: the
others are *parked* (`AdapterModel.park`), their sites and the values of the backbone tensors they
override (a HyperFormer's LayerNorms, a full fine-tuning's encoder) kept aside, so no model sees
another's weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .artifact_files import artifact_output, read_artifact_config
from .backbones import Backbone, load_backbone
from .checkpoints import atomic_directory_write
from .errors import ConfigError
from .inference import FittedModel, bundle_fitted_model, load_fitted_model, predict
from .model_set_files import MANIFEST, Target, folder_and_task
from .precision import default_device

KEY_FIELDS = ("model", "task")  # the row field that names its target, in order of preference


class FittedModelSet:
    def __init__(self, targets: Mapping[str, Target], backbone: Backbone | str | None = None,
                 device: str | None = None):
        if not targets:
            raise ConfigError("a model set needs at least one fitted target")
        folders = {name: folder_and_task(target) for name, target in targets.items()}
        if not isinstance(backbone, Backbone):
            first_folder = next(iter(folders.values()))[0]
            config = read_artifact_config(first_folder)
            backbone = load_backbone(backbone or config["backbone"]["name"], output=artifact_output(config))
        device = device or default_device()
        backbone.model.to(device)
        self.backbone = backbone
        self._models: dict[str, FittedModel] = {}
        self._active: str | None = None
        for name, (folder, task) in folders.items():
            self._models[name] = load_fitted_model(folder, backbone, task=task, device=device)
            self._models[name].model.park()

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def fitted(self, name: str) -> FittedModel:
        return self._models[name]

    def predict(self, rows: Iterable[Mapping], *, batch_size: int | None = None,
                on_batch: Callable[[int], None] | None = None, where: str = "input") -> list[dict]:
        """One prediction per row, in order; each row's `model` (or `task`) field picks its target."""
        rows = list(rows)
        groups: dict[str, list[int]] = {}
        for number, row in enumerate(rows):
            groups.setdefault(self._target_of(row, f"{where} row {number + 1}"), []).append(number)
        answers: list[dict | None] = [None] * len(rows)
        for name, indices in groups.items():
            self._activate(name)
            group = predict(self._models[name], [rows[i] for i in indices], batch_size=batch_size,
                            on_batch=on_batch, where=f"{where} (rows of {name})")
            for i, answer in zip(indices, group):
                answers[i] = answer
        return answers

    def _target_of(self, row: Mapping, where: str) -> str:
        key = next((row[f] for f in KEY_FIELDS if isinstance(row.get(f), str)), None)
        if key is None and len(self._models) == 1:
            return self.names[0]
        if key not in self._models:
            said = f"names {key!r}" if key is not None else f"has no {' or '.join(KEY_FIELDS)} field"
            raise ConfigError(f"{where} {said}; this model set answers: {', '.join(self.names)}")
        return key

    def _activate(self, name: str) -> None:
        if self._active != name:
            self.close()
            self._models[name].model.resume()
            self._active = name

    def close(self) -> None:
        """Leave the backbone as it was loaded (every model parked)."""
        if self._active is not None:
            self._models[self._active].model.park()
            self._active = None


# -- on disk: one folder of bundles and a manifest naming them ------------------------------------
def save_model_set(targets: Mapping[str, Target], destination: Path) -> Path:
    """Write a self-contained copy of `targets` (bundles in `0/`, `1/`, ... and `targets.json`)."""
    entries = {name: folder_and_task(target) for name, target in targets.items()}
    bundles: dict[Path, str] = {}  # one bundle per folder, also when several tasks of a joint model use it

    def write(tmp: Path) -> None:
        manifest = {}
        for name, (folder, task) in entries.items():
            if folder not in bundles:
                bundles[folder] = str(len(bundles))
                bundle_fitted_model(folder, tmp / bundles[folder])
            manifest[name] = {"folder": bundles[folder], "task": task}
        (tmp / MANIFEST).write_text(json.dumps({"targets": manifest}, indent=1))

    atomic_directory_write(Path(destination), write)
    return Path(destination)
