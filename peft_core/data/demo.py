"""The built-in demo suite: four related review tasks generated from word lists (no downloads).

Every sentence states an opinion: a subject ("the film"), a quality ("boring"), maybe negated
("was not boring"). Its meaning is (subject group, quality, polarity), where polarity is the
adjective's polarity flipped by negation. The tasks ask about that meaning in different ways:

- demo_sentiment  (single sentence): is the opinion positive?
- demo_nli        (pair): same subject and quality, same polarity -> entailment, opposite ->
                  contradiction; a different subject or quality -> neutral.
- demo_similarity (pair, 0..5): overlap of subject, quality and polarity, plus noise.
- demo_lowres     (single sentence, 72 training examples): reported speech about an opinion
                  ("asked about the film , she called it not boring"): would the speaker
                  recommend it? The low-resource target: new wording, the same polarity
                  underneath, too few examples to learn negation and antonyms from scratch.
Data are seeded by task name and split, so every call returns the same examples. About 5 % of
classification labels are flipped so the tasks are learnable but not trivially separable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from collections.abc import Callable

from peft_core.data.types import Example
from peft_core.errors import DataError
from peft_core.task_specs import TaskSpec

# Synonym groups of subjects, and antonym pairs of adjective synonym groups (positive, negative).
SUBJECTS = (
    ("movie", "film"), ("meal", "dinner"), ("hotel", "inn"), ("car", "vehicle"), ("book", "novel"),
    ("concert", "show"), ("phone", "handset"), ("teacher", "tutor"), ("garden", "park"), ("game", "match"),
)
QUALITIES = (
    (("great", "excellent"), ("awful", "terrible")),
    (("exciting", "thrilling"), ("boring", "dull")),
    (("friendly", "kind"), ("rude", "unkind")),
    (("clean", "tidy"), ("dirty", "filthy")),
    (("cheap", "affordable"), ("expensive", "overpriced")),
    (("quiet", "calm"), ("noisy", "loud")),
)
TEMPLATES = (
    "the {subject} was {adjective}",
    "i thought the {subject} was {adjective}",
    "honestly , the {subject} is {adjective}",
    "my friends said the {subject} was {adjective}",
    "overall the {subject} seemed {adjective}",
    "we found the {subject} {adjective}",
)
INTENSIFIERS = ("", "", "very ", "really ", "quite ")
LABEL_NOISE = 0.05

# (train, dev) sizes. Sources are small enough to train a MiniLM adapter in well under a minute.
DEMO_SIZES = {
    "demo_sentiment": (600, 200),
    "demo_nli": (600, 200),
    "demo_similarity": (600, 200),
    "demo_lowres": (72, 400),
}


@dataclass(frozen=True)
class Opinion:
    subject: int
    quality: int
    positive_adjective: bool
    negated: bool

    @property
    def positive(self) -> bool:
        return self.positive_adjective != self.negated


def _random_opinion(rng: random.Random, subject: int | None = None, quality: int | None = None) -> Opinion:
    return Opinion(
        subject=rng.randrange(len(SUBJECTS)) if subject is None else subject,
        quality=rng.randrange(len(QUALITIES)) if quality is None else quality,
        positive_adjective=rng.random() < 0.5,
        negated=rng.random() < 0.3,
    )


def _with_polarity(rng: random.Random, opinion: Opinion, positive: bool) -> Opinion:
    """Same subject and quality with the given polarity, worded directly or as a negated antonym."""
    negated = rng.random() < 0.3
    return Opinion(opinion.subject, opinion.quality, positive != negated, negated)


def _other(rng: random.Random, count: int, excluded: int) -> int:
    return rng.choice([i for i in range(count) if i != excluded])


def _render(rng: random.Random, opinion: Opinion, templates: tuple[str, ...] = TEMPLATES) -> str:
    adjectives = QUALITIES[opinion.quality][0 if opinion.positive_adjective else 1]
    adjective = ("not " if opinion.negated else "") + rng.choice(INTENSIFIERS) + rng.choice(adjectives)
    return rng.choice(templates).format(subject=rng.choice(SUBJECTS[opinion.subject]), adjective=adjective)


def _noisy(rng: random.Random, label: int, num_labels: int) -> int:
    return _other(rng, num_labels, label) if rng.random() < LABEL_NOISE else label


def _sentiment_example(rng: random.Random) -> Example:
    opinion = _random_opinion(rng)
    return Example((_render(rng, opinion),), _noisy(rng, int(opinion.positive), 2))


def _nli_example(rng: random.Random) -> Example:
    premise = _random_opinion(rng)
    label = rng.randrange(3)  # entailment, neutral, contradiction
    if label == 0:
        hypothesis = _with_polarity(rng, premise, premise.positive)
    elif label == 2:
        hypothesis = _with_polarity(rng, premise, not premise.positive)
    elif rng.random() < 0.5:
        hypothesis = _random_opinion(rng, subject=_other(rng, len(SUBJECTS), premise.subject))
    else:
        hypothesis = _random_opinion(rng, subject=premise.subject, quality=_other(rng, len(QUALITIES), premise.quality))
    return Example((_render(rng, premise), _render(rng, hypothesis)), _noisy(rng, label, 3))


def _similarity_example(rng: random.Random) -> Example:
    first = _random_opinion(rng)
    kind = rng.randrange(3)
    if kind == 0:
        second = _random_opinion(rng, subject=first.subject, quality=first.quality)
    elif kind == 1:
        second = _random_opinion(rng, subject=first.subject)
    else:
        second = _random_opinion(rng)
    same_subject = first.subject == second.subject
    same_quality = same_subject and first.quality == second.quality
    score = 2.0 * same_subject + 1.5 * same_quality + 1.5 * (same_quality and first.positive == second.positive)
    score = min(5.0, max(0.0, score + rng.gauss(0.0, 0.3)))
    return Example((_render(rng, first), _render(rng, second)), round(score, 2))


REPORTED_TEMPLATES = (
    "asked about the {subject} , she called it {adjective}",
    "when we talked about the {subject} he said {adjective}",
    "my neighbour described the {subject} as {adjective}",
    "in one word , the {subject} : {adjective}",
)


def _lowres_example(rng: random.Random) -> Example:
    opinion = _random_opinion(rng)
    text = _render(rng, opinion, REPORTED_TEMPLATES)
    return Example((text,), _noisy(rng, int(opinion.positive), 2))


_GENERATORS: dict[str, Callable[[random.Random], Example]] = {
    "demo_sentiment": _sentiment_example,
    "demo_nli": _nli_example,
    "demo_similarity": _similarity_example,
    "demo_lowres": _lowres_example,
}


def generate_demo_data(spec: TaskSpec) -> dict[str, list[Example]]:
    """The demo task's "train" and "dev" examples; the same on every call and machine."""
    generator = _GENERATORS.get(spec.name)
    if generator is None:
        raise DataError(
            f"task {spec.name} is not a demo task; use one of {', '.join(_GENERATORS)} "
            "or load it from source 'local' or 'hub'"
        )
    sizes = dict(zip(("train", "dev"), DEMO_SIZES[spec.name]))
    raw = {}
    for split, size in sizes.items():
        rng = random.Random(f"adapterflow-demo:{spec.name}:{split}")  # str seeds are stable across runs
        raw[split] = [generator(rng) for _ in range(size)]
    return raw
