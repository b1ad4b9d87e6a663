"""AdapterSoup in the pipeline: the transfer stage hands each fit its sources' training data, the fit
chooses by similarity (the target's own adapter left out) and its weights.json says why."""

from __future__ import annotations

import json

from flows.config import load_config
from flows.stages import run_stage
from tasks.tracking import PARENT_TAG
from flows.store import tracking_for


def test_the_soup_chooses_its_sources_by_similarity_and_reports_the_choice(prefect_api, tiny_config):
    path, _ = tiny_config(name="soup", methods=["adaptersoup"], transfer={"options": {"adaptersoup": {"top_k": 1}}})
    cfg = load_config(path)
    parent_id = run_stage(cfg, None)
    tracking = tracking_for(cfg)
    runs = tracking.client().search_runs([tracking.experiment_id()], f"tags.`{PARENT_TAG}` = '{parent_id}'")
    [fit] = [r for r in runs if r.data.tags["method"] == "adaptersoup"]
    assert json.loads(fit.data.params["sources"]) == ["demo_sentiment", "demo_nli", "demo_lowres"]  # others + own
    with open(tracking.client().download_artifacts(fit.info.run_id, "weights.json")) as handle:
        report = json.load(handle)
    choice = report["choice"]
    assert choice["select"] == "similarity" and choice["left_out"] == ["demo_lowres"]
    assert set(choice["similarity"]) == {"demo_sentiment", "demo_nli", "demo_lowres"}
    best = max(["demo_sentiment", "demo_nli"], key=choice["similarity"].get)
    assert choice["chosen"] == {best: 1.0}
    assert report["weights"][0] == [1.0 if name == best else 0.0 for name in report["sources"]]
