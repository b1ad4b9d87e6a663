"""The name of every method a config can ask for, and of each transfer method's options, without torch.

The config validates against these names without loading the methods; each registry of
implementations (`compositions.TRANSFER_METHODS`, `scalearn.SCALEARN_VARIANTS`) is built over them
with `implemented`, so a method declared here and not implemented, or the reverse, fails its import.
"""

from __future__ import annotations

from typing import Literal, TypeVar, get_args

SCALEARN_VARIANTS: tuple[str, ...] = (
    "scalearn", "scalearn_uniform", "scalearn_plus_plus", "scalearn_uniform_plus_plus")
TRANSFER_METHODS: tuple[str, ...] = ("average", "adaptersoup", "adapterfusion", *SCALEARN_VARIANTS, "pemt")
# transfer methods whose sources and target carry task-description prompts (a task's `description`)
PROMPT_METHODS: tuple[str, ...] = ("pemt",)

HyperFormerVariant = Literal["hyperformer", "hyperformer_plus_plus"]
HYPERFORMER_VARIANTS: tuple[str, ...] = get_args(HyperFormerVariant)
MultitaskMethod = Literal[HyperFormerVariant, "shared_adapter", "full_multitask"]
MULTITASK_METHODS: tuple[str, ...] = get_args(MultitaskMethod)

# few-shot transfer over a joint HyperFormer(++) of the sources (METHODS §2a): transfer-stage units;
# method name -> the joint model it adapts (the multi-task method of that name)
FEW_SHOT_SUFFIX = "_few_shot"
JOINT_MODEL_OF: dict[str, str] = {f"{variant}{FEW_SHOT_SUFFIX}": variant for variant in HYPERFORMER_VARIANTS}
HYPERFORMER_TRANSFER_METHODS: tuple[str, ...] = tuple(JOINT_MODEL_OF)

BASELINE_METHODS: tuple[str, ...] = ("adapter", "full_finetune")
ALL_METHODS: tuple[str, ...] = BASELINE_METHODS + TRANSFER_METHODS + HYPERFORMER_TRANSFER_METHODS + MULTITASK_METHODS

T = TypeVar("T")


def implemented(kind: str, names: tuple[str, ...], implementations: dict[str, T]) -> dict[str, T]:
    """`implementations` in the order of `names`, which must be exactly its keys."""
    missing = [name for name in names if name not in implementations]
    undeclared = [name for name in implementations if name not in names]
    if missing or undeclared:
        raise RuntimeError(f"the {kind} registry does not match peft_core/method_names.py: declared but not "
                           f"implemented {missing}, implemented but not declared {undeclared}")
    return {name: implementations[name] for name in names}


# transfer method -> its options (`transfer.options`): its builder's keyword options, then those of its choice
# of sources (AdapterSoup); TransferMethod checks them
TRANSFER_OPTIONS: dict[str, tuple[str, ...]] = implemented("transfer option", TRANSFER_METHODS, {
    "average": (),
    "adaptersoup": ("weights", "select", "top_k", "sample_size", "include_target"),
    "adapterfusion": ("regularization", "attention_dropout"),
    **{variant: ("omega_dropout",) for variant in SCALEARN_VARIANTS},
    "pemt": ("sparsity_weight", "target_adapter", "train_layernorms"),
})
