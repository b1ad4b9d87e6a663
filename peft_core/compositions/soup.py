"""AdapterSoup (Chronopoulou et al. 2023): the sources' parameters averaged into one adapter per site.

`θ = Σ_j w_j θ_j` with `Σ_j w_j = 1`, then `delta = A_θ(z)`: weight-space averaging, where
`average` averages the adapters' outputs. Nothing trains but the head.

Which sources go into the soup, and with what weights, is chosen before the model is built
(`choose_soup_sources`, which `fit_transfer` calls), as in the setting where ScaLearn's paper
reports AdapterSoup (CPJKU/ScaLearn, `src/training/get_trainer.py` and `src/arguments.py`):

- `select: similarity` (the default): each source scores the similarity of its training text to
  the target's (`text_similarity`, over a seeded sample of `sample_size` examples of each: 1000,
  where ScaLearn's script draws 10,000, to keep the pass over every source cheap on a CPU); the
  `top_k` (5) highest go in, weighted by their similarity (clamped at 0) scaled to sum to 1, as
  ScaLearn's soup does (not uniformly over the chosen ones). Sources of the target's own task
  (its own adapter) are left out unless `include_target: true` (ScaLearn's `soup_include_target`,
  default false; its released GLUE script sets it true).
- `select: all`: every source uniformly, the weaker baseline (no choice, the target's own adapter
  included when it is a source); `weights: [...]` gives fixed weights, one per source, instead.

The builder itself averages with the weights it is given (uniform without), so a saved fit, which
records the chosen weights, rebuilds without its data.

How a kind's parameters average is its bank's (`StackedAdapters.averaged`): a bottleneck's tensors
one by one; LoRA sources' updates exactly, `ΔW = s Σ_j w_j B_j A_j`, as one LoRA of rank
(chosen sources) · r, not A and B averaged apart (`lora.LoraBank.averaged` says why). A LoRA being
linear in its input, a soup of LoRAs computes what averaging their outputs with the same weights
does: the choice of sources is what sets it apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..adapters import StackedAdapters
from ..configs import AdapterConfig
from ..errors import ConfigError
from ..method_names import SOUP_WEIGHTS_FIX as WEIGHTS_FIX, option_problem
from ..pooling import POOLINGS
from .single import SingleAdapter
from .text_similarity import SAMPLE_SEED, SourceTexts, text_similarities

# the options that choose the sources (`choose_soup_sources`) and their defaults; the builder's is `weights`
CHOICE_DEFAULTS = {"select": "similarity", "top_k": 5, "sample_size": 1000, "include_target": False}


class AdapterSoup(SingleAdapter):
    """One frozen adapter whose tensors are the `weights`-weighted sum of the bank's K adapters'."""

    def __init__(self, bank: StackedAdapters, adapter: AdapterConfig, weights: Sequence[float]):
        soup, state = bank.averaged(weights, adapter)
        super().__init__(bank.in_features, soup, bank.out_features)
        self.load_adapter_state(state)
        self.requires_grad_(False)
        self.weights = list(weights)

    def report(self) -> dict:
        return {"weights": self.weights}


def soup_weights(weights: Sequence[float] | None, num_sources: int) -> list[float]:
    """The user's weights checked and scaled to sum to 1; None: uniform."""
    if weights is None:
        return [1.0 / num_sources] * num_sources
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) \
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise ConfigError(f"adaptersoup option 'weights' must be a list of numbers, not {weights!r}; {WEIGHTS_FIX}")
    if len(weights) != num_sources:
        raise ConfigError(f"adaptersoup option 'weights' has {len(weights)} value(s) but the fit combines "
                          f"{num_sources} source adapters; {WEIGHTS_FIX}")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"adaptersoup option 'weights' {list(weights)} must be finite and non-negative with a "
                          f"positive sum (they are scaled to sum to 1); {WEIGHTS_FIX}")
    total = sum(weights)
    return [w / total for w in weights]


def build_adaptersoup(banks: Sequence[StackedAdapters], adapter: AdapterConfig, *,
                      weights: Sequence[float] | None = None) -> list[AdapterSoup]:
    """One averaged adapter per site; `weights` (one per source, in source order) default to uniform.
    The fit's choice of sources (`choose_soup_sources`) arrives here as weights."""
    scaled = soup_weights(weights, banks[0].num_adapters)
    return [AdapterSoup(bank, adapter, scaled) for bank in banks]


# -- the choice of sources -----------------------------------------------------------------------
def similarity_choice(similarities: Sequence[float], eligible: Sequence[bool], top_k: int) -> dict[int, float]:
    """{source index: weight} of the chosen sources, highest similarity first: the `top_k` eligible
    sources of highest similarity (the earlier source on a tie), weighted by their similarity clamped
    at 0 and scaled to sum to 1 (uniformly when every one is at most 0)."""
    ranked = sorted((j for j, ok in enumerate(eligible) if ok), key=lambda j: (-similarities[j], j))[:top_k]
    scores = [max(similarities[j], 0.0) for j in ranked]
    total = sum(scores)
    return {j: (score / total if total > 0 else 1.0 / len(ranked)) for j, score in zip(ranked, scores)}


def soup_choice_options(options: dict) -> dict:
    """The choice options with their defaults, checked (one-line ConfigErrors naming the option; each
    value's rule is in method_names.TRANSFER_OPTION_CHECKS)."""
    chosen = CHOICE_DEFAULTS | {k: v for k, v in options.items() if k in CHOICE_DEFAULTS}
    problem = option_problem("adaptersoup", {k: v for k, v in options.items() if k in CHOICE_DEFAULTS})
    if problem:
        raise ConfigError(problem)
    if options.get("weights") is not None and options.get("select") == "similarity":
        raise ConfigError("adaptersoup options 'weights' and select: similarity both set the weights; remove one "
                          "(weights are fixed, one per source; select: similarity chooses them)")
    return chosen


def choose_soup_sources(options: dict, texts: SourceTexts) -> tuple[dict, dict]:
    """The builder's options for this fit (the chosen `weights`) and the record of the choice."""
    chosen = soup_choice_options(options)
    if options.get("weights") is not None or chosen["select"] == "all":
        return options, {"select": "weights" if options.get("weights") is not None else "all"}
    if texts.source_examples is None:
        raise ConfigError("adaptersoup chooses its sources by the similarity of their training examples to the "
                          "target's (select: similarity, the default); pass each source's training examples "
                          "(fit_transfer's source_examples), or set select: all for the uniform soup")
    empty = [n for n, e in zip(texts.source_names, texts.source_examples) if not e]
    if empty or not texts.target_examples:
        raise ConfigError(f"adaptersoup compares training examples, but {', '.join(empty) or texts.target} has none; "
                          "give every source and the target training examples, or set select: all")
    eligible = [chosen["include_target"] or task != texts.target for task in texts.source_tasks]
    if not any(eligible):
        raise ConfigError(f"adaptersoup leaves out the target's own adapter ({texts.target}) and the fit has no "
                          "other source; add sources, or set include_target: true")
    similarities = text_similarities(texts.backbone, texts.target_examples, texts.source_examples,
                                     chosen["sample_size"], texts.max_length)
    choice = similarity_choice(similarities, eligible, chosen["top_k"])
    names = list(texts.source_names)
    record = {**chosen, "sample_seed": SAMPLE_SEED,
              "measure": f"mean pairwise cosine of {POOLINGS[texts.backbone.layout.pooling].adjective} backbone sentence "
                         "embeddings",
              "similarity": dict(zip(names, similarities)),
              "left_out": [n for n, ok in zip(names, eligible) if not ok],
              "chosen": {names[j]: w for j, w in choice.items()}}
    return options | {"weights": [choice.get(j, 0.0) for j in range(len(names))]}, record
