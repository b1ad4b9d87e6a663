"""What a re-run trains: `--force-stage` retrains exactly its stage's units (joint multitask models
included), a plain re-run reuses every unit and records each reuse (evaluations included), and a
run in which one target fails keeps the other targets' units, so fixing the input trains only the
failed target's."""

from __future__ import annotations

import pytest
import yaml

import tasks.adapter_units as adapter_units
from flows.stages import run_stage
from peft_core.errors import DataError
from flows.config import load_config
from tasks.reporting import choose_pipeline_run
from tasks.stage_table import FORCEABLE_STAGES, STAGES
from tasks.tracking import PARENT_TAG, Tracking
from flows.store import tracking_for

# The MLflow `stage` tags of each forceable stage's unit runs.
STAGE_TAGS = {s.name: {s.name, *s.run_tags} for s in STAGES if s.has_units}
TRAIN = {"epochs": 1, "batch_size": 16, "max_length": 24, "learning_rate": 0.001}


def _reused_by_stage(tracking: Tracking, parent_run_id: str) -> dict[str, set[bool]]:
    runs = tracking.client().search_runs([tracking.experiment_id()], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                         max_results=500)
    reused: dict[str, set[bool]] = {}
    for run in runs:
        reused.setdefault(run.data.tags["stage"], set()).add(run.data.tags.get("reused") == "true")
    return reused


@pytest.fixture(scope="module")
def trained(prefect_api, tmp_path_factory, tiny_backbone_dir):
    """A config whose every stage has units, run once."""
    folder = tmp_path_factory.mktemp("force")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({
        "name": "force", "backbone": str(tiny_backbone_dir), "home": str(folder / "home"),
        "data": {"source": "demo", "max_train": 32, "max_eval": 16},
        "sources": ["demo_sentiment", "demo_nli"], "targets": ["demo_lowres"],
        "methods": ["adapter", "average", "shared_adapter"], "adapter": {"reduction_factor": 4},
        "training": {"sources": TRAIN, "targets": TRAIN, "multitask": TRAIN},
    }))
    cfg = load_config(path)
    run_stage(cfg, None)
    return cfg


def test_a_rerun_reuses_every_unit_and_records_each(trained):
    reused = _reused_by_stage(tracking_for(trained), run_stage(trained, None))
    assert set(reused) == set().union(*STAGE_TAGS.values())
    assert all(flags == {True} for flags in reused.values()), reused


@pytest.mark.parametrize("stage", FORCEABLE_STAGES)
def test_force_stage_retrains_that_stage_only(trained, stage):
    parent = run_stage(trained.model_copy(update={"force_stages": [stage]}), None)
    reused = _reused_by_stage(tracking_for(trained), parent)
    for tag, flags in reused.items():
        assert flags == ({False} if tag in STAGE_TAGS[stage] else {True}), (tag, reused)


def test_a_failing_target_keeps_the_others_and_the_rerun_trains_only_it(prefect_api, tiny_config, monkeypatch):
    """The failing target comes first: its fit (which needs its adapter) must not keep the later
    targets' fits from being submitted, nor cancel them when the stage ends."""
    path, _ = tiny_config(name="failing", sources=["demo_sentiment"], methods=["adapter", "average"],
                          targets=["demo_lowres", "demo_sentiment", "demo_nli"],
                          training={"sources": TRAIN, "targets": {**TRAIN, "learning_rate": 0.002}})
    cfg = load_config(path)
    tracking = tracking_for(cfg)
    train_adapter = adapter_units.train_adapter

    def fails_on_lowres(backbone, spec, *args, **kwargs):
        if spec.name == "demo_lowres":
            raise DataError("demo_lowres: a bad row")
        return train_adapter(backbone, spec, *args, **kwargs)

    monkeypatch.setattr(adapter_units, "train_adapter", fails_on_lowres)
    with pytest.raises(DataError, match="a bad row"):
        run_stage(cfg, None)
    finished = tracking.client().search_runs([tracking.experiment_id()],
                                             "tags.stage = 'transfer' and attributes.status = 'FINISHED'")
    others = {(task, method) for task in ("demo_sentiment", "demo_nli") for method in ("adapter", "average")}
    assert {(r.data.tags["task"], r.data.tags["method"]) for r in finished} == others
    assert "failed and none has finished" in choose_pipeline_run(tracking).note

    monkeypatch.undo()  # the input is fixed
    parent = run_stage(cfg, None)
    rerun = tracking.client().search_runs([tracking.experiment_id()],
                                          f"tags.`{PARENT_TAG}` = '{parent}' and tags.stage = 'transfer'")
    assert {(r.data.tags["task"], r.data.tags["method"]): r.data.tags.get("reused") == "true" for r in rerun} == \
        {**dict.fromkeys(others, True), ("demo_lowres", "adapter"): False, ("demo_lowres", "average"): False}
    assert choose_pipeline_run(tracking).run.info.run_id == parent
