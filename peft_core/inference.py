"""Use a fitted model: load the folder any training unit saved, and predict over rows of text.

    fitted = load_fitted_model("fits/rte-scalearn")   # loads the backbone the artifact names
    predict(fitted, [{"sentence1": "A man plays a guitar.", "sentence2": "A man plays."}])
    # [{"label": "entailment", "score": 0.83, "probabilities": {"entailment": 0.83, ...}}]

The folder may hold an adapter (a PEMT source with its prompt, a materialised HyperFormer task),
a transfer fit (ScaLearn and its variants, averaging, AdapterFusion, PEMT), a full fine-tuning,
a HyperFormer few-shot fit or a joint multi-task model (HyperFormer(++), shared adapter, full
multi-task: `task=` picks the task); `artifact_layout.ARTIFACT_KINDS` says which function rebuilds
each kind. `bundle_fitted_model` copies a transfer fit with the source adapters it stacks, so
the copy loads on any machine with the same backbone.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .artifact_layout import ArtifactKind, artifact_kind, bundled_source
from .artifact_files import CONFIG_FILE, WEIGHTS_FILE, artifact_output, read_artifact_config
from .backbones import Backbone, load_backbone
from .checkpoints import atomic_directory_write
from .data.encoding import EncodedSplit, collate, make_batches
from .data.types import Example
from .errors import ArtifactError, ConfigError
from .inputs import rows_to_examples
from .metrics import compute_metrics
from .model import AdapterModel
from .precision import autocast, default_device, native_bf16
from .task_specs import TaskSpec, get_task
from .text_model import score_text_answers, text_records


@dataclass
class FittedModel:
    """A loaded model and what predicting with it needs: its task, backbone and settings."""

    model: AdapterModel
    spec: TaskSpec
    backbone: Backbone
    config: dict  # the artifact's adapter_config.json
    precision: str  # "bf16" or "fp32": what the model was evaluated in, where this machine has it
    device: torch.device

    @property
    def max_length(self) -> int:
        return self.config["training"]["max_length"]

    @property
    def batch_size(self) -> int:
        return self.config["training"]["eval_batch_size"]

    def close(self) -> None:
        """Take the model off its backbone, leaving the backbone as it was loaded."""
        self.model.detach()


def load_fitted_model(folder: Path, backbone: Backbone | str | None = None, *, task: str | None = None,
                      device: str | None = None) -> FittedModel:
    """The model a unit saved in `folder`, on `backbone` (a loaded one, a name, or the recorded name).

    A fingerprint mismatch between the artifact and the backbone is an `ArtifactError` naming both.
    """
    folder = Path(folder)
    config = read_artifact_config(folder)
    kind = artifact_kind(config, folder)
    if not isinstance(backbone, Backbone):
        backbone = load_backbone(backbone or config["backbone"]["name"], output=artifact_output(config))
    spec = _own_task(folder, config, task)
    model = _load(kind, folder, backbone, config, spec)
    target = torch.device(device or default_device())
    model.to(target).eval()
    return FittedModel(model, spec, backbone, config, _precision(config, target.type), target)


def _precision(config: dict, device_type: str) -> str:
    recorded = (config.get("training") or {}).get("precision", "fp32")
    return "bf16" if recorded == "bf16" and native_bf16(device_type) else "fp32"


def _load(kind: ArtifactKind, folder: Path, backbone: Backbone, config: dict, spec: TaskSpec) -> AdapterModel:
    """The model of `folder`, rebuilt by its kind's loader (see `ArtifactKind` for the calls)."""
    load = kind.loader()
    if kind.joint:
        return load(folder, backbone)
    if kind.stacks_sources:
        bundled = [bundled_source(folder, s["name"]) for s in config.get("sources") or []]
        return load(folder, backbone, spec, bundled if bundled and all(d.is_dir() for d in bundled) else None)
    return load(folder, backbone, spec)


def _own_task(folder: Path, config: dict, task: str | None) -> TaskSpec:
    """The spec of the task the artifact was trained on (`task`: which one of a joint model), as the
    artifact records it; artifacts written before specs were recorded whole name a built-in task,
    checked against its labels."""
    if "tasks" in config:
        tasks = {entry["spec"]["name"]: entry["spec"] for entry in config["tasks"]}
        chosen = task or (next(iter(tasks)) if len(tasks) == 1 else None)
        if chosen not in tasks:
            raise ConfigError(f"{folder} is a joint {config['method']} model of tasks {', '.join(tasks)}; "
                              f"{'pick one' if task is None else f'{task!r} is not one of them'} (task=..., CLI --task)")
        recorded = tasks[chosen]
    else:
        recorded = config["task"]
        if task is not None and task != recorded["name"]:
            raise ConfigError(f"{folder} was fitted on task {recorded['name']}, not {task}; drop the task or pick "
                              "the model of that task")
    if "text_fields" in recorded:
        return TaskSpec.from_json(recorded)
    spec = get_task(recorded["name"])
    if list(spec.label_names or []) != list(recorded.get("label_names") or []):
        raise ArtifactError(f"{folder} was trained with labels {recorded.get('label_names')} for task {spec.name}, "
                            f"but the built-in {spec.name} has {spec.label_names}; retrain it")
    return spec


def fitted_spec(folder: Path, task: str | None = None) -> TaskSpec:
    """The task spec of a fitted folder (`task`: which task of a joint model), without loading it."""
    folder = Path(folder)
    return _own_task(folder, read_artifact_config(folder), task)


# -- predicting ---------------------------------------------------------------------------------
@torch.no_grad()
def predict_logits(fitted: FittedModel, examples: list[Example], batch_size: int | None = None,
                   on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """Logits of every example in order, batched and truncated as the model was evaluated.

    `on_batch(rows)` is called after each batch (for a progress bar).
    """
    outputs = _per_row(fitted, examples, lambda batch: fitted.model(batch, fitted.spec.name).logits.float().cpu(),
                       batch_size, on_batch)
    return torch.stack(outputs)


@torch.no_grad()
def _per_row(fitted: FittedModel, examples: list[Example], run: Callable[[dict], Iterable],
             batch_size: int | None, on_batch: Callable[[int], None] | None) -> list:
    """`run(batch)`'s rows for every example in order, batched and truncated as the model was evaluated."""
    split = EncodedSplit.from_examples(fitted.spec, examples, fitted.backbone.tokenizer, fitted.max_length)
    fitted.model.eval()
    outputs, order = [], []
    for indices in make_batches(split.rows, batch_size or fitted.batch_size, shuffle=False, seed=0):
        batch = collate([split.rows[i] for i in indices], split.pad_id)
        del batch["labels"]
        with autocast(fitted.precision, fitted.device.type):
            outputs.extend(run({k: v.to(fitted.device) for k, v in batch.items()}))
        order.extend(indices)
        if on_batch:
            on_batch(len(indices))
    return [outputs[i] for i in torch.argsort(torch.tensor(order)).tolist()]


def predict(fitted: FittedModel, rows: Iterable[Mapping], *, batch_size: int | None = None,
            on_batch: Callable[[int], None] | None = None, where: str = "input") -> list[dict]:
    """One prediction per row: `{"label", "score", "probabilities"}` (classification, multiple
    choice) or `{"value"}` (regression); a text-to-text model's `{"label"}` or `{"value"}` with the
    `output` it generated, the answer None where the output maps to none. `where` names the rows in errors."""
    examples = rows_to_examples(fitted.spec, rows, where)
    if fitted.model.output == "text":
        texts = _per_row(fitted, examples, lambda batch: fitted.model.generate_texts(batch, fitted.spec.name),
                         batch_size, on_batch)
        return text_records(fitted.model.heads[fitted.spec.name], texts)
    return [prediction_record(fitted.spec, row) for row in predict_logits(fitted, examples, batch_size, on_batch)]


def prediction_record(spec: TaskSpec, logits: torch.Tensor) -> dict:
    if spec.is_regression:
        return {"value": float(logits)}
    probabilities = torch.softmax(logits, dim=-1).tolist()
    best = int(logits.argmax())
    return {"label": spec.label_names[best], "score": probabilities[best],
            "probabilities": dict(zip(spec.label_names, probabilities))}


def score_rows(fitted: FittedModel, rows: list[Mapping], where: str = "input") -> dict[str, float]:
    """The task's metrics of the model's predictions against the rows' `label`s."""
    return score_predictions(fitted.spec, rows, predict(fitted, rows, where=where), where)


def score_predictions(spec: TaskSpec, rows: list[Mapping], answers: list[dict], where: str = "input") -> dict[str, float]:
    """The task's metrics of `answers` (as `predict` returns them) against the rows' `label`s."""
    labels = np.asarray([e.label for e in rows_to_examples(spec, rows, where, with_labels=True)])
    if any("output" in a for a in answers):  # a text-to-text model's
        return score_text_answers(spec, answers, labels)
    predicted = [a["value"] if spec.is_regression else spec.label_names.index(a["label"]) for a in answers]
    return compute_metrics(spec, np.asarray(predicted), labels)


# -- self-contained copies ------------------------------------------------------------------------
def bundle_fitted_model(folder: Path, destination: Path,
                        locate_source: Callable[[Path], Path] | None = None) -> Path:
    """Copy a fitted folder with every source adapter it stacks under `sources/<name>/`.

    The copy loads wherever the backbone does: `load_fitted_model` prefers bundled sources over
    the folders the fit recorded (the fingerprints are still checked). `locate_source` maps a
    recorded source folder to where it is now (the folder's store may have moved since the fit).
    """
    folder = Path(folder)
    config = read_artifact_config(folder)

    def write(tmp: Path) -> None:
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copy2(folder / name, tmp / name)
        for source in config.get("sources") or []:
            copied = bundled_source(folder, source["name"])
            origin = copied if copied.is_dir() else (locate_source or Path)(Path(source["adapter_dir"]))
            read_artifact_config(origin)  # a clear error when a recorded source folder is gone
            copy = bundled_source(tmp, source["name"])
            copy.mkdir(parents=True)
            for name in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copy2(origin / name, copy / name)

    atomic_directory_write(Path(destination), write)
    return Path(destination)
