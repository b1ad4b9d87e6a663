"""Text-to-text tasks on an encoder-decoder (T5): the seeds' form (HyperFormer), where answers are words.

A classification target is its label's name ("entailment"); a regression target is its value
rounded as T5 does for STS-B (to the nearest 0.2, written with one decimal: "3.4"). Each target
ends with the model's end-of-sequence token. Training minimises the decoder's token cross-entropy
over the target; a prediction is the greedy decoding, mapped back to a label or read as a number.
An output that maps to none is *unparseable*: counted (the `unparseable` metric) and scored as
wrong: a classification row as the label after its true one, a regression row as -1.0 (what
T5's and HyperFormer's code read an unparseable number as).

Adapter sites sit in the encoder's and the decoder's blocks (`Backbone.stacks`); the decoder's
cross-attention has none, as in HyperFormer. The decoder's sites read a context of their own
(`ForwardContext.at`): the decoder positions of each answer, and the encoder's output and prompt
(PEMT's gate there). A prompt (PEMT) prefixes the encoder's input only.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from .backbones import Backbone
from .errors import ConfigError
from .metrics import compute_metrics
from .model import AdapterModel, ModelOutput
from .sites import ForwardContext, Placement
from .task_specs import TaskSpec

UNPARSEABLE_VALUE = -1.0
UNPARSEABLE = "unparseable"  # the metric counting the rows whose output maps to no answer
IGNORED = -100  # target positions the loss skips (padding)
# Numbers whose round trip through a tokenizer shows it can write every regression target.
_NUMBER_PROBES = ("-0.2", "1.4", "3.6", "5.8", "7.0", "9.0")


def target_text(spec: TaskSpec, label: float) -> str:
    if spec.is_regression:
        return f"{round(label * 5) / 5:.1f}"
    return spec.label_names[int(label)]


def _normalised(text: str) -> str:
    """Comparable form of a decoded text: tokenizers differ in case and in spaces around punctuation."""
    return "".join(text.lower().split())


class TextTargets(nn.Module):
    """A task's answers as token ids and back: the text model's counterpart of a task head, with
    nothing to train."""

    def __init__(self, spec: TaskSpec, backbone: Backbone):
        super().__init__()
        if spec.problem == "multiple_choice":
            raise ConfigError(f"task {spec.name}: multiple choice has no text-to-text form here; use task_output: head")
        self.spec, self.tokenizer = spec, backbone.tokenizer
        eos = backbone.model.generation_config.eos_token_id
        self.eos_id = eos[0] if isinstance(eos, list) else eos
        probes = _NUMBER_PROBES if spec.is_regression else spec.label_names
        lengths = [len(self._checked_ids(text)) for text in probes]
        self.labels = {_normalised(name): i for i, name in enumerate(spec.label_names or ())}
        if len(self.labels) < spec.num_labels and not spec.is_regression:
            raise ConfigError(f"task {spec.name}: labels {list(spec.label_names)} are not told apart as text (case and "
                              "spaces aside); rename them or use task_output: head")
        # one token past the longest answer, so that a longer output shows as longer, not cut to an answer
        self.max_new_tokens = max(lengths) + 1

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.eos_id]

    def _checked_ids(self, text: str) -> list[int]:
        ids = self._ids(text)
        decoded = self.decode_one(ids)
        if _normalised(decoded) != _normalised(text):
            kind = "regression targets such as" if self.spec.is_regression else "label"
            raise ConfigError(f"task {self.spec.name}: {kind} {text!r} reads back from the backbone's tokenizer as "
                              f"{decoded!r}, so it cannot be a text-to-text target; rename the label or use "
                              "task_output: head")
        return ids

    def encode(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, T) target ids of a batch's labels, padded with IGNORED."""
        rows = [self._ids(target_text(self.spec, label)) for label in labels.tolist()]
        width = max(map(len, rows))
        return torch.tensor([row + [IGNORED] * (width - len(row)) for row in rows], device=labels.device)

    def decode_one(self, ids: list[int]) -> str:
        """The text of generated ids, up to the first end-of-sequence token."""
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def parse(self, texts: list[str]) -> torch.Tensor:
        """Each output's label index (-1 where it names none) or value (NaN where it is no number)."""
        if self.spec.is_regression:
            return torch.tensor([_number(_normalised(t)) for t in texts], dtype=torch.float32)
        return torch.tensor([self.labels.get(_normalised(t), -1) for t in texts], dtype=torch.long)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def score_text_predictions(spec: TaskSpec, predictions: np.ndarray,
                           labels: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """The task's metrics with every unparseable prediction (as `TextTargets.parse` marks them)
    scored as wrong, and how many there were; and the predictions as scored."""
    missed = np.isnan(predictions) if spec.is_regression else predictions < 0
    scored = predictions.copy()
    scored[missed] = UNPARSEABLE_VALUE if spec.is_regression else (labels[missed] + 1) % spec.num_labels
    return compute_metrics(spec, scored, labels) | {UNPARSEABLE: float(missed.sum())}, scored


def text_records(targets: TextTargets, texts: list[str]) -> list[dict]:
    """`inference.predict`'s records of generated `texts`: the answer (None where there is none) and the output."""
    spec, parsed = targets.spec, targets.parse(texts).tolist()
    if spec.is_regression:
        return [{"value": None if np.isnan(v) else v, "output": text} for v, text in zip(parsed, texts)]
    return [{"label": None if i < 0 else spec.label_names[i], "output": text} for i, text in zip(parsed, texts)]


def score_text_answers(spec: TaskSpec, answers: list[dict], labels: np.ndarray) -> dict[str, float]:
    """`score_text_predictions` of `text_records` answers."""
    if spec.is_regression:
        predicted = np.asarray([np.nan if a["value"] is None else a["value"] for a in answers], dtype=np.float64)
    else:
        predicted = np.asarray([-1 if a["label"] is None else spec.label_names.index(a["label"]) for a in answers])
    return score_text_predictions(spec, predicted, labels)[0]


class TextToTextModel(AdapterModel):
    """An encoder-decoder with adapter sites in both stacks, answering each task in words."""

    output = "text"

    def add_head(self, spec: TaskSpec, dropout: float = 0.1) -> TextTargets:
        self.heads[spec.name] = TextTargets(spec, self.backbone_info)
        return self.heads[spec.name]

    def forward(self, batch: dict[str, torch.Tensor], task: str) -> ModelOutput:
        """Teacher-forced logits of the batch's targets (its `labels`) and their token cross-entropy."""
        targets = self.heads[task].encode(batch["labels"])
        logits = self.teacher_forced_logits(batch, task, targets)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORED)
        if self.context.auxiliary_losses:
            loss = loss + torch.stack(self.context.auxiliary_losses).sum()
        return ModelOutput(logits=logits, loss=loss)

    def teacher_forced_logits(self, batch: dict[str, torch.Tensor], task: str, targets: torch.Tensor) -> torch.Tensor:
        """(B, T, V) logits of each position of `targets` (B, T) token ids, IGNORED past each row's end,
        given the tokens before it."""
        encoded, mask = self._run_encoder(batch, task, targets != IGNORED)
        decoder_inputs = self.encoder.prepare_decoder_input_ids_from_labels(labels=targets)
        return self.encoder(encoder_outputs=encoded, attention_mask=mask, decoder_input_ids=decoder_inputs).logits

    def greedy(self, batch: dict[str, torch.Tensor], task: str, **options):
        """`generate`'s greedy decoding of each row's answer, one token a step over the decoder's cache
        (its output: the ids, decoder start token first; `options` such as output_logits go to it)."""
        targets = self.heads[task]
        with torch.no_grad():
            encoded, mask = self._run_encoder(batch, task, None)
            with _answer_positions(self.encoder.get_decoder(), self.context.decoder, targets.eos_id):
                return self.encoder.generate(encoder_outputs=encoded, attention_mask=mask, do_sample=False,
                                             num_beams=1, **{"max_new_tokens": targets.max_new_tokens, **options})

    def generate_texts(self, batch: dict[str, torch.Tensor], task: str) -> list[str]:
        """Each row's greedy answer, as text."""
        generated = self.greedy(batch, task)
        return [self.heads[task].decode_one(row[1:]) for row in generated.tolist()]  # after the decoder's start token

    def _run_encoder(self, batch: dict[str, torch.Tensor], task: str,
                     decoder_mask: torch.Tensor | None) -> tuple[BaseModelOutput, torch.Tensor]:
        """The encoder's output and the attention mask the encoder and the decoder's cross-attention
        read; sets the call's context, the decoder sites' with `decoder_mask` (B, T_dec) (None: set
        step by step while generating). With a prompt (PEMT) the encoder reads its embeddings before
        the input's, and the mask covers them, for the cross-attention too (as PEMT's released code
        extends it)."""
        mask = batch["attention_mask"]
        if self.prompt is None:
            self.context.reset(task, mask, 0)
            inputs = {"input_ids": batch["input_ids"]}
        else:
            prefix = self.prompt(mask.shape[0])
            length = prefix.shape[1]
            inputs = {"inputs_embeds": torch.cat([prefix, self.encoder.get_input_embeddings()(batch["input_ids"])], 1)}
            mask = torch.cat([mask.new_ones(mask.shape[0], length), mask], dim=1)
            self.context.reset(task, mask, length)
        encoded = self.encoder.get_encoder()(**inputs, attention_mask=mask)
        self.context.set_decoder(encoded.last_hidden_state, decoder_mask)
        return encoded, mask

    def predict_batch(self, batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
        return self.heads[task].parse(self.generate_texts(batch, task))

    def scored(self, spec: TaskSpec, predictions: np.ndarray,
               labels: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        return score_text_predictions(spec, predictions, labels)


@contextmanager
def _answer_positions(decoder: nn.Module, context: ForwardContext, eos_id: int):
    """While a greedy decoding runs: before each decoder step, the decoder context's mask marks the
    rows that have not yet fed the end-of-sequence token, the positions a teacher-forced pass on the
    decoded answer counts (its targets run up to and including that token)."""
    finished = None

    def before_step(module, args, kwargs):
        nonlocal finished
        ids = kwargs["input_ids"] if kwargs.get("input_ids") is not None else args[0]
        fed = (ids == eos_id).cumsum(1) > 0  # (B, t): the token or one before it ended the answer
        if finished is not None:
            fed = fed | finished.unsqueeze(1)
        finished = fed[:, -1]
        context.attention_mask = ~fed

    hook = decoder.register_forward_pre_hook(before_step, with_kwargs=True)
    try:
        yield
    finally:
        hook.remove()


def adapter_model(backbone: Backbone, placement: str | Placement) -> AdapterModel:
    """A model of `backbone`'s output form (heads or text) with sites for `placement`."""
    return (TextToTextModel if backbone.output == "text" else AdapterModel)(backbone, placement)
