"""The one place that says which code decides what a unit of work computes, and its version.

A unit's cache key (tasks/keys.py) holds its settings, its data's content digest, the precision
it runs in and the *versions* of the components on its compute path below, not a digest of all
code. So plotting, reports, the CLI, docs, tests, a pure refactor or a method added beside the
others leave finished units valid, and a change that can alter a result invalidates exactly the
units that run through it.

The rule, for whoever edits a module listed here:
- the change can alter what a unit computes (adapter or composition maths, the training loop, the
  tokenisation, a default setting): bump that component's version;
- it cannot (a rename, a comment, a refactor with identical results, a new method in its own
  module): leave the version.
Either way record the code's new digest: `python -m peft_core.compute_versions --record`.
`tests/peft_core/test_compute_versions.py` fails while a listed module's code (comments, docstrings
and formatting aside) differs from its recorded digest, so that decision is never skipped.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import threading
from functools import cache
from pathlib import Path

ROOT = Path(__file__).parent
DIGESTS_FILE = ROOT / "compute_digests.json"

# component -> (version, modules relative to peft_core/). Data *loading* is not listed: the
# prepared splits' content digest is already part of every key. An entry with a `*` is a glob, so a
# new method module in compositions/ is on the transfer path with no edit here.
COMPONENTS: dict[str, tuple[int, tuple[str, ...]]] = {
    "encoding": (1, ("data/encoding.py", "task_specs.py")),
    "model": (1, ("architectures.py", "backbones.py", "backbone_paths.py", "backbone_state.py", "sites.py", "model.py",
                  "heads.py", "adapters.py", "lora.py", "adapter_kinds.py", "prompts.py", "compositions/single.py",
                  "layernorms.py", "pooling.py", "text_model.py")),
    "training": (3, ("training.py", "configs.py", "precision.py", "dropout.py", "metrics.py", "jobs.py", "adapter_jobs.py",
                     "full_finetune.py")),
    "transfer": (3, ("transfer.py", "compositions/*.py")),
    "multitask": (1, ("multitask.py", "sampling.py", "hyperformer/__init__.py", "hyperformer/composition.py",
                      "hyperformer/hypernetwork.py", "hyperformer/layernorms.py", "hyperformer/model.py")),
    "hyperformer_transfer": (2, ("hyperformer/few_shot.py", "few_shot_options.py")),
    "peft_import": (1, ("peft_import.py", "peft_folder.py")),
}

# Modules that cannot change a unit's result: I/O, errors, names, metering, data loading (digested
# by content), and prediction with fitted models and their export to PEFT (no unit runs them).
OFF_COMPUTE_PATH: tuple[str, ...] = (
    "__init__.py", "artifact_files.py", "artifact_layout.py", "artifacts.py", "checkpoints.py", "compute_versions.py",
    "errors.py", "resources.py",
    "inference.py", "inputs.py", "method_names.py", "model_set.py", "model_set_files.py", "statistics.py",
    "data/__init__.py", "data/demo.py", "data/loaders.py", "data/readers.py", "data/splits.py", "data/types.py",
    "hyperformer/counting.py", "parameter_counts.py", "weights_plot.py", "peft_export.py",
)

# unit kind -> the components its result depends on
UNIT_COMPONENTS: dict[str, tuple[str, ...]] = {
    "adapter": ("encoding", "model", "training"),
    "full_finetune": ("encoding", "model", "training"),
    "evaluate": ("encoding", "model", "training"),
    "transfer": ("encoding", "model", "training", "transfer"),
    "multitask": ("encoding", "model", "training", "multitask"),
    # a few-shot fit over a joint HyperFormer (its key also holds the joint model's key)
    "hyperformer_transfer": ("encoding", "model", "training", "multitask", "hyperformer_transfer"),
    # a PEFT LoRA folder taken in as a source for a task (its key also holds the folder's digest): the
    # task spec it records, the layout its modules are placed by, and the mapping
    "peft_import": ("encoding", "model", "peft_import"),
}


def versions_for(kind: str) -> dict[str, int]:
    """The component versions a unit of `kind` computes with (part of its key)."""
    return {name: COMPONENTS[name][0] for name in UNIT_COMPONENTS[kind]}


def modules_of(component: str) -> tuple[str, ...]:
    """A component's modules, its globs expanded now, less modules another entry names exactly
    (compositions/single.py belongs to `model`)."""
    named = {m for _, modules in COMPONENTS.values() for m in modules if "*" not in m}
    found: list[str] = []
    for entry in COMPONENTS[component][1]:
        if "*" in entry:
            found += sorted(m for p in ROOT.glob(entry) if (m := p.relative_to(ROOT).as_posix()) not in named)
        else:
            found.append(entry)
    return tuple(found)


# CPython 3.11's ast.parse can fail in two threads at once ("AST constructor recursion depth
# mismatch", gh-106905), and units prepare data in parallel threads.
_PARSING = threading.Lock()


def code_digest(module: str) -> str:
    """A digest of a module's code with comments, docstrings and formatting left out."""
    with _PARSING:
        tree = ast.parse((ROOT / module).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


@cache
def current_digests() -> dict[str, dict[str, str]]:
    return {name: {m: code_digest(m) for m in modules_of(name)} for name in COMPONENTS}


def recorded_digests() -> dict[str, dict]:
    return json.loads(DIGESTS_FILE.read_text()) if DIGESTS_FILE.exists() else {}


def unrecorded_changes() -> list[str]:
    """'component: module' for every listed module whose code differs from the recorded digest,
    or whose component's version changed since it was recorded."""
    recorded = recorded_digests()
    changes = []
    for name, (version, _) in COMPONENTS.items():
        entry = recorded.get(name, {})
        for module, digest in current_digests()[name].items():
            if entry.get("modules", {}).get(module) != digest or entry.get("version") != version:
                changes.append(f"{name}: {module}")
    return changes


def unclassified_modules() -> list[str]:
    """Modules of peft_core in neither COMPONENTS nor OFF_COMPUTE_PATH (a new module must be placed)."""
    listed = {m for name in COMPONENTS for m in modules_of(name)} | set(OFF_COMPUTE_PATH)
    return sorted(p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py")
                  if p.relative_to(ROOT).as_posix() not in listed)


def record() -> None:
    payload = {name: {"version": version, "modules": current_digests()[name]}
               for name, (version, _) in COMPONENTS.items()}
    DIGESTS_FILE.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true", help="record the current code digests")
    if parser.parse_args().record:
        record()
    for change in unrecorded_changes():
        print(f"unrecorded change: {change}")
    for module in unclassified_modules():
        print(f"not classified: {module} (add it to COMPONENTS or OFF_COMPUTE_PATH)")


if __name__ == "__main__":
    main()
