"""What `adapterflow tasks` shows: every task a config can use, and with --check what each of the
config's tasks holds after loading and splitting (the same recipe the pipeline's prepare stage runs)."""

from __future__ import annotations

from collections import Counter

from peft_core.task_specs import builtin_declarations
from flows.config import PipelineConfig
from flows.data_plans import data_recipe
from flows.task_settings import task_declaration


def task_rows(cfg: PipelineConfig) -> list[tuple[str, ...]]:
    """(task, benchmark, problem, inputs, labels, metrics, role in the config, description) for the
    built-in tasks and the config's declared ones."""
    declared = {name: task_declaration(name, settings) for name, settings in cfg.tasks.items()}
    tasks = {**builtin_declarations(), **declared}
    rows = []
    for name, task in tasks.items():
        roles = [role for role, names in (("source", cfg.sources), ("target", cfg.targets)) if name in names]
        labels = ("regression" if task.is_regression
                  else "/".join(task.label_names) if task.label_names else f"found in {task.label_field}")
        benchmark = f"{task.benchmark} (own files)" if name in cfg.tasks and task.benchmark != "declared" else task.benchmark
        rows.append((name, benchmark, task.problem, ", ".join(task.input_fields), labels,
                     ", ".join(task.resolved_metrics), " + ".join(roles), task.description))
    return rows


def check_tasks(cfg: PipelineConfig) -> list[tuple[str, str, int, str]]:
    """(task, split, rows, rows per label) for every task whose data the config reads, loaded and split as the
    pipeline will (caps included); a bad file or declaration raises its one-line error."""
    checked = []
    for name in dict.fromkeys([*cfg.data_tasks(), *(t for t, settings in cfg.tasks.items() if settings.data)]):
        splits = data_recipe(cfg, name, "source").splits()
        for split in ("train", "validation", "test"):
            examples = splits.split(split)
            if splits.spec.is_regression:
                values = [ex.label for ex in examples]
                labels = f"mean {sum(values) / len(values):.3g}, range {min(values):.3g} to {max(values):.3g}"
            else:
                counts = Counter(ex.label for ex in examples)
                labels = ", ".join(f"{label} {counts[i]}" for i, label in enumerate(splits.spec.label_names))
            checked.append((name, split, len(examples), labels))
    return checked
