"""The real GLUE files in ../shared/data/glue: row counts from its README and the B1 split."""

from pathlib import Path

import pytest

from peft_core.data import apply_split, load_raw, load_task_data
from peft_core.task_specs import get_task
from flows.config import load_config
from tests.helpers.benchmarks import GLUE_DIR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not GLUE_DIR.is_dir(), reason=f"no real GLUE data at {GLUE_DIR}"),
]

# Labelled rows per split as B1's config reads the folder (train, and dev as test; one pool where a
# task has a single kind of file), from the folder's README.
README_ROWS = {
    "rte": {"train": 2490, "test": 277},
    "mrpc": {"train": 3668, "test": 408},
    "stsb": {"train": 5749, "test": 1500},
    "cola": {"train": 8551, "test": 1043},
    "sst2": {"train": 67349, "test": 872},
    "qnli": {"all": 5463},
    "mnli": {"all": 9815 + 9832},
    "qqp": {"all": 23497},
}
B1_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "glue-lowres.yaml"


@pytest.fixture(scope="module")
def raw_glue():
    cfg = load_config(B1_CONFIG, **{"data.path": str(GLUE_DIR)})
    return {task: load_raw(cfg.task_declaration(task)).examples for task in README_ROWS}


@pytest.mark.parametrize("task", README_ROWS)
def test_row_counts_match_the_readme(raw_glue, task):
    assert {name: len(examples) for name, examples in raw_glue[task].items()} == README_ROWS[task]


def test_labels_cover_every_class(raw_glue):
    for task, raw in raw_glue.items():
        spec = get_task(task)
        if not spec.is_regression:
            assert {ex.label for examples in raw.values() for ex in examples} == set(range(spec.num_labels)), task


def test_b1_split_convention(raw_glue):
    """B1: validation = 10 % of train (stratified, seed 42), test = dev; MNLI/QNLI/QQP (one file): 10 % test, then 10 % of the rest validation."""
    expected = {  # task: (train, validation, test)
        "rte": (2241, 249, 277),
        "mrpc": (3301, 367, 408),
        "stsb": (5174, 575, 1500),
        "cola": (7695, 856, 1043),
        "sst2": (10_000, 6735, 872),
        "qnli": (4424, 492, 547),
        "mnli": (15_913, 1769, 1965),
        "qqp": (19_032, 2115, 2350),
    }
    for task, sizes in expected.items():
        splits = apply_split(get_task(task), raw_glue[task], seed=42, max_train=10_000 if task == "sst2" else None)
        assert (len(splits.train), len(splits.validation), len(splits.test)) == sizes, task


def test_target_cap_is_a_seeded_stratified_draw(raw_glue):
    mrpc = get_task("mrpc")
    capped = load_task_data(mrpc, "local", GLUE_DIR, max_train=2000)
    again = apply_split(mrpc, raw_glue["mrpc"], max_train=2000)
    full = apply_split(mrpc, raw_glue["mrpc"])
    assert len(capped.train) == 2000 and capped.digest() == again.digest()
    share = sum(ex.label for ex in capped.train) / 2000
    assert share == pytest.approx(sum(ex.label for ex in full.train) / len(full.train), abs=0.001)
