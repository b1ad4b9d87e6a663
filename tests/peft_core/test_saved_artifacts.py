"""Artifacts written by earlier code still load and answer as they did: one of every kind, per fixture.

Every `fixtures/artifacts-<commit>/` folder was written by `fixtures/make_artifacts.py` at that
commit. After a change to what artifacts hold, run the script again and commit the new folder
beside the old ones: the old ones must keep passing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peft_core.artifact_layout import ARTIFACT_KINDS, KIND_OF_METHOD
from tests.peft_core.fixtures.make_artifacts import BACKBONE_DIR, EXPECTED_FILE, load_saved_backbone, predictions

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("artifacts-*"))
CASES = [pytest.param(folder, entry, id="/".join(filter(None, (folder.name, entry["artifact"], entry["task"]))))
         for folder in FIXTURES for entry in json.loads((folder / EXPECTED_FILE).read_text())]


def _numbers(answer: dict) -> dict[str, float]:
    return {k: v for k, v in answer.items() if isinstance(v, float)} | {
        f"probability of {label}": p for label, p in answer.get("probabilities", {}).items()}


@pytest.mark.parametrize(("folder", "entry"), CASES)
def test_a_saved_artifact_answers_as_when_it_was_written(folder, entry):
    answers = predictions(folder / entry["artifact"], load_saved_backbone(folder / BACKBONE_DIR), entry["task"],
                          entry["rows"])
    assert [a.get("label") for a in answers] == [e.get("label") for e in entry["predictions"]]
    for answer, expected in zip(answers, entry["predictions"], strict=True):
        assert _numbers(answer) == pytest.approx(_numbers(expected), abs=1e-6)


def test_the_fixtures_hold_every_kind_of_artifact_and_no_unknown_one():
    methods = {entry["method"] for folder in FIXTURES for entry in json.loads((folder / EXPECTED_FILE).read_text())}
    assert methods <= set(KIND_OF_METHOD)
    assert {KIND_OF_METHOD[method].name for method in methods} == {kind.name for kind in ARTIFACT_KINDS}
