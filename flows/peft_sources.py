"""Sources brought in as Hugging Face PEFT LoRA folders (`tasks.<task>.peft_adapter`): what a config
with such a source must satisfy. Light (no torch), as the config schema that calls it.

An imported source is not trained: the sources stage imports its folder (`peft_core.peft_import`).
Its task's data is read only where a method reads every source's examples (AdapterSoup choosing
by similarity, joint training), so a declared task imported without `data` is fine elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from peft_core.method_names import MULTITASK_METHODS, PROMPT_METHODS, reads_source_examples
from peft_core.peft_folder import PEFT_FILES
from peft_core.task_specs import builtin_name

if TYPE_CHECKING:
    from flows.config import PipelineConfig


def peft_folder_problem(folder: Path) -> str | None:
    """Why `folder` is not a PEFT LoRA folder, or None."""
    if not folder.is_dir():
        return f"folder {folder} does not exist; point it at a folder PeftModel.save_pretrained wrote (relative " \
               "to the config file)"
    missing = [name for name in PEFT_FILES if not (folder / name).is_file()]
    if missing:
        return f"{folder} has no {' or '.join(missing)}; point it at a folder PeftModel.save_pretrained wrote " \
               f"(holding {' and '.join(PEFT_FILES)})"
    return None


def source_example_readers(config: PipelineConfig) -> list[str]:
    """The config's methods that read every source's training examples."""
    return [m for m in config.methods if m in MULTITASK_METHODS or
            reads_source_examples(m, config.transfer.options_for(m))]


def imported_source_problem(config: PipelineConfig) -> str | None:
    """What keeps the config's imported sources from running, in one line naming the field and the fix."""
    imported = config.imported_sources()
    targets = [t for t in config.targets if t in config.imported_tasks()]
    if targets:
        return (f"field 'tasks.{targets[0]}.peft_adapter': {targets[0]} is a target, which is trained here; "
                "remove it from `targets` or remove its peft_adapter")
    if not imported:
        return None
    if config.adapter.kind != "lora":
        return (f"field 'adapter.kind': source {imported[0]} is a PEFT LoRA (tasks.{imported[0]}.peft_adapter) and "
                f"adapter.kind is {config.adapter.kind!r}, whose sources cannot stack with it; set adapter.kind: lora")
    if prompts := config.methods_in(PROMPT_METHODS):
        return (f"field 'methods': {prompts[0]} needs a task prompt on every source and the imported source "
                f"{imported[0]} has none; remove {prompts[0]} or {imported[0]}'s peft_adapter")
    unlabelled = [t for t in imported if builtin_name(t) is None and config.tasks[t].label_names is None
                  and config.tasks[t].problem != "regression"]
    if unlabelled:
        return (f"field 'tasks.{unlabelled[0]}.label_names': the imported source {unlabelled[0]} reads no data to find "
                "its labels in; list them")
    readers = source_example_readers(config)
    without_data = [t for t in imported if not config.has_data(t)]
    if readers and without_data:
        task, method = without_data[0], readers[0]
        fix = "or use select: all or weights (transfer.options.adaptersoup)" if method == "adaptersoup" \
            else f"or remove {method}"
        return (f"field 'tasks.{task}.data': {method} reads every source's training examples and the imported "
                f"source {task} has no data; give the task's data, {fix}")
    return None
