"""The name of every method a config can ask for, and of each transfer method's options, without torch.

The config validates against these names without loading the methods; each registry of
implementations (`compositions.TRANSFER_METHODS`, `scalearn.SCALEARN_VARIANTS`) is built over them
with `implemented`, so a method declared here and not implemented, or the reverse, fails its import.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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

# methods whose hypernetwork generates bottleneck adapters: no other adapter kind
BOTTLENECK_ONLY_METHODS: tuple[str, ...] = HYPERFORMER_VARIANTS + HYPERFORMER_TRANSFER_METHODS

BASELINE_METHODS: tuple[str, ...] = ("adapter", "full_finetune")
ALL_METHODS: tuple[str, ...] = BASELINE_METHODS + TRANSFER_METHODS + HYPERFORMER_TRANSFER_METHODS + MULTITASK_METHODS

# methods that train in text-to-text form (`task_output: text`): the single adapter, the transfer
# methods whose compositions train something (ScaLearn, AdapterFusion, PEMT: the paper's own T5
# setting; their decoder sites read the decoder's positions and, PEMT's gate, the encoder's output at
# the prompt positions), HyperFormer(++) (the paper's own setting) with its few-shot transfer, and the
# shared adapter. Averaging and AdapterSoup train only a head, which a text model has none of; full
# fine-tuning and full multi-task training are not built for a whole encoder-decoder.
TEXT_OUTPUT_METHODS: tuple[str, ...] = ("adapter", "adapterfusion", *SCALEARN_VARIANTS, "pemt", *HYPERFORMER_VARIANTS,
                                        "shared_adapter", *HYPERFORMER_TRANSFER_METHODS)


def text_output_problem(method: str) -> str | None:
    """Why `method` cannot run with `task_output: text`, in one sentence with the fix; None when it can."""
    if method in TEXT_OUTPUT_METHODS:
        return None
    return (f"method '{method}' has no text-to-text form (task_output: text runs {', '.join(TEXT_OUTPUT_METHODS)}); "
            "remove it from methods or use task_output: head")


T = TypeVar("T")


def implemented(kind: str, names: tuple[str, ...], implementations: dict[str, T]) -> dict[str, T]:
    """`implementations` in the order of `names`, which must be exactly its keys."""
    missing = [name for name in names if name not in implementations]
    undeclared = [name for name in implementations if name not in names]
    if missing or undeclared:
        raise RuntimeError(f"the {kind} registry does not match peft_core/method_names.py: declared but not "
                           f"implemented {missing}, implemented but not declared {undeclared}")
    return {name: implementations[name] for name in names}


PemtTargetAdapter = Literal["sequential", "parallel"]  # PEMT's target adapter: after the mixture, or beside it
SoupSelect = Literal["similarity", "all"]  # AdapterSoup's sources: the most similar ones, or every one

# What an option's value may be: a check returning the problem in words, or None when the value is fine.
OptionCheck = Callable[[object], "str | None"]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def one_of(*choices: str) -> OptionCheck:
    return lambda value: None if value in choices else f"use one of {', '.join(choices)}"


def true_or_false(value) -> str | None:
    return None if isinstance(value, bool) else "use true or false"


def at_least(low: float, whole: bool = False) -> OptionCheck:
    kind = "a whole number" if whole else "a number"

    def check(value) -> str | None:
        fine = _number(value) and value >= low and (not whole or isinstance(value, int))
        return None if fine else f"use {kind} of at least {low:g}"
    return check


def fraction(value) -> str | None:
    return None if _number(value) and 0 <= value < 1 else "use a number from 0 up to (not including) 1"


SOUP_WEIGHTS_FIX = "give one weight per source, in the order of the fit's sources, e.g. weights: [0.7, 0.3]"


def weights_or_none(value) -> str | None:
    fine = value is None or (isinstance(value, (list, tuple)) and all(_number(w) and w >= 0 for w in value))
    return None if fine else f"{SOUP_WEIGHTS_FIX} (non-negative numbers)"


# transfer method -> its options (`transfer.options`) in the order the method declares them (its
# builder's keyword options, then those of its choice of sources: AdapterSoup) and what each value may
# be. The config checks values when it loads, so a typo fails before the sources train; TransferMethod
# checks them again when a fit is built from Python.
TRANSFER_OPTION_CHECKS: dict[str, dict[str, OptionCheck]] = implemented("transfer option", TRANSFER_METHODS, {
    "average": {},
    "adaptersoup": {"weights": weights_or_none, "select": one_of(*get_args(SoupSelect)), "top_k": at_least(1, whole=True),
                    "sample_size": at_least(1, whole=True), "include_target": true_or_false},
    "adapterfusion": {"regularization": at_least(0), "attention_dropout": fraction},
    **{variant: {"omega_dropout": fraction} for variant in SCALEARN_VARIANTS},
    "pemt": {"sparsity_weight": at_least(0), "target_adapter": one_of(*get_args(PemtTargetAdapter)),
             "train_layernorms": true_or_false},
})
TRANSFER_OPTIONS: dict[str, tuple[str, ...]] = {m: tuple(checks) for m, checks in TRANSFER_OPTION_CHECKS.items()}


def option_problem(method: str, options: dict) -> str | None:
    """What is wrong with `options` of the transfer method `method`, in one sentence naming the option
    and the fix; None when nothing is."""
    checks = TRANSFER_OPTION_CHECKS[method]
    unknown = sorted(set(options) - set(checks))
    if unknown:
        return f"{method} has no option(s) {unknown}; its options: {', '.join(checks) or 'none'}"
    for name, value in options.items():
        problem = checks[name](value)
        if problem:
            return f"{method} option '{name}' is {value!r}; {problem}"
    return None


def reads_source_examples(method: str, options: dict) -> bool:
    """Whether transfer method `method` with `options` reads its sources' training examples: AdapterSoup
    choosing them by similarity (its default select, without fixed weights)."""
    return method == "adaptersoup" and options.get("weights") is None and options.get("select", "similarity") == "similarity"
