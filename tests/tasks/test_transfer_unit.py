"""The units the transfer stage plans (flows/unit_plans.py): what goes into their keys and params, what the config
refuses. That the unit logs the weights heatmap and report is checked on a real pipeline run in
tests/flows/test_pipeline.py."""

from __future__ import annotations

import pytest

from flows.config import PipelineConfig, load_config
from flows.unit_plans import multitask_plan, transfer_plan
from peft_core.errors import ConfigError
from tasks.unit_specs import PreparedData

def _prepared(role: str = "target", train: int = 32, task: str = "demo_lowres", seed: int | None = 1) -> PreparedData:
    return PreparedData(task, folder="", digest=f"d-{task}", spec={}, sizes={"train": train}, role=role, seed=seed)


def _plan(cfg, train: int = 32):
    prepared = {"source": {t: _prepared("source", 1000, t, None) for t in cfg.sources},
                "target": {t: {s: _prepared("target", train, t, s) for s in cfg.seeds} for t in cfg.targets}}
    return transfer_plan(cfg, prepared)


def _fit(plan, method):
    return next(fit for fit in plan.fits if fit.method == method)


def test_a_head_from_the_own_adapter_is_its_own_unit_and_the_default_keeps_the_keys():
    def key(**transfer):
        cfg = PipelineConfig(name="keys", transfer=transfer, methods=["adapter", "scalearn", "average"])
        return _fit(_plan(cfg), "scalearn").key

    assert key() == key(head_init={"default": "new"}) == key(head_init={"average": "own"})
    assert key(head_init={"scalearn": "own"}) != key()


def test_an_own_head_without_an_own_source_is_a_config_error():
    with pytest.raises(ConfigError, match="transfer.head_init': pemt starts its head from the target's own adapter"):
        load_config(None, **{"methods": ["adapter", "pemt"], "transfer.head_init": {"default": "own"}})


def test_a_step_budget_by_passes_grows_with_the_sample_and_is_in_every_target_key():
    """target_steps: 30 passes with a floor of 60 steps gives 60 steps at k = 32 and 480 at k = 256
    (batch 16), and the resolved budget reaches the keys of every kind of target fit."""
    methods = ["adapter", "scalearn", "full_finetune", "hyperformer_plus_plus_few_shot"]
    cfg = load_config(None, **{"training.targets.batch_size": 16, "training.target_steps": {"passes": 30, "min_steps": 60},
                               "methods": methods})
    small, large = _plan(cfg, 32), _plan(cfg, 256)
    assert [_fit(p, "scalearn").train.max_steps for p in (small, large)] == [60, 480]
    assert large.full_finetunes[0].train.max_steps == 480
    kinds = ("own_adapters", "fits", "full_finetunes", "few_shot_fits")
    assert all(getattr(small, kind)[0].key != getattr(large, kind)[0].key for kind in kinds)
    # sources keep their own settings whatever the targets' budget
    assert [s.key for s in small.sources] == [s.key for s in large.sources]
    capped = load_config(None, **{"training.targets.batch_size": 16, "methods": methods,
                                  "training.target_steps": {"passes": 30, "min_steps": 60, "max_steps": 200}})
    assert _fit(_plan(capped, 256), "scalearn").train.max_steps == 200


def test_every_rate_is_resolved_where_the_units_are_planned():
    """Published rates for transfer methods, full fine-tuning's own, HyperFormer few-shot at the targets'
    unless transfer.learning_rate gives one; a given rate wins over a published one."""
    methods = ["adapter", "scalearn", "average", "full_finetune", "hyperformer_plus_plus_few_shot"]
    plan = _plan(load_config(None, methods=methods))
    rates = {fit.method: fit.train.learning_rate for fit in [*plan.fits, *plan.full_finetunes, *plan.few_shot_fits]}
    targets = plan.own_adapters[0].train.learning_rate
    assert rates == {"scalearn": 6e-3, "average": targets, "full_finetune": 2e-5, "hyperformer_plus_plus_few_shot": targets}
    given = _plan(load_config(None, methods=methods, **{"transfer.learning_rate": {"default": 1e-3}}))
    assert {fit.train.learning_rate for fit in [*given.fits, *given.few_shot_fits]} == {1e-3}


def test_key_and_params_of_every_kind_name_the_same_inputs(tmp_path):
    """Each unit kind's MLflow params hold every input its key hashes, with the same value."""
    from flows.peft_sources import PEFT_FILES
    from flows.unit_plans import evaluation_plan, multitask_plan, sources_plan
    from tasks.unit_specs import PARAM_NAMES, UNIT_KINDS, UnitResult

    for name in PEFT_FILES:
        (tmp_path / name).write_text("{}")
    imported = load_config(None, methods=["scalearn"], adapter={"kind": "lora"},
                           tasks={"demo_nli": {"peft_adapter": str(tmp_path)}})

    methods = ["adapter", "scalearn", "pemt", "full_finetune", "hyperformer_plus_plus_few_shot", "hyperformer"]
    cfg = load_config(None, methods=methods)
    prepared = {"source": {t: _prepared("source", 1000, t, None) for t in cfg.sources},
                "target": {t: {s: _prepared("target", 32, t, s) for s in cfg.seeds} for t in cfg.targets}}
    plan = transfer_plan(cfg, prepared)
    adapter = plan.own_adapters[0]
    result = UnitResult(adapter.stage, adapter.task, adapter.method, adapter.key, "run", "/adapter", seed=adapter.seed)
    specs = [*sources_plan(cfg, prepared), *plan.own_adapters, *plan.fits, *plan.full_finetunes, *plan.joint_models,
             *plan.few_shot_fits, *multitask_plan(cfg, prepared), *evaluation_plan(cfg, prepared, [result]),
             *sources_plan(imported, prepared)]
    assert {type(s) for s in specs} == set(UNIT_KINDS)
    for spec in specs:
        params = spec.params()
        for name, value in spec.inputs().items():
            assert params.get(spec.param_names.get(name, name)) == value, (type(spec).__name__, name)
    assert PARAM_NAMES["data"] == "data_digest"  # the name runs were always logged with


def test_one_step_budget_for_the_targets():
    with pytest.raises(ConfigError, match="training.targets.max_steps and training.target_steps both set"):
        load_config(None, **{"training.targets.max_steps": 60, "training.target_steps": {"passes": 30}})


def test_text_output_is_in_the_keys_of_adapters_and_fits_and_leaves_head_keys_as_they_were():
    def plan(task_output):
        cfg = PipelineConfig(name="keys", backbone="t5", task_output=task_output, methods=["adapter", "scalearn"])
        return _plan(cfg)

    head, text = plan("head"), plan("text")
    assert "task_output" not in _fit(head, "scalearn").inputs() and "task_output" not in head.sources[0].inputs()
    assert {u.task_output for u in [*text.fits, *text.sources, *text.own_adapters]} == {"text"}
    assert _fit(text, "scalearn").key != _fit(head, "scalearn").key
    assert text.sources[0].key != head.sources[0].key


def test_text_output_reaches_the_keys_of_joint_models_and_few_shot_fits_and_leaves_head_keys_as_they_were():
    methods = ["hyperformer", "hyperformer_plus_plus", "shared_adapter", "hyperformer_plus_plus_few_shot"]

    def units(task_output):
        cfg = load_config(None, backbone="t5", task_output=task_output, methods=methods)
        plan = _plan(cfg)
        joint = multitask_plan(cfg, {"source": {t: _prepared("source", 1000, t, None) for t in cfg.sources},
                                     "target": {t: {s: _prepared("target", 32, t, s) for s in cfg.seeds}
                                                for t in cfg.targets}})
        return [*joint, *plan.joint_models, *plan.few_shot_fits]

    head, text = units("head"), units("text")
    assert len(head) == len(text) == 5 and not any("task_output" in u.inputs() for u in head)
    assert all(u.inputs()["task_output"] == "text" and u.task_output == "text" for u in text)
    assert not {u.key for u in head} & {u.key for u in text}
    with pytest.raises(ConfigError, match="method 'full_multitask' has no text-to-text form") as caught:
        load_config(None, task_output="text", methods=["hyperformer", "full_multitask"])
    assert "\n" not in str(caught.value)


def test_a_method_without_a_text_form_fails_at_config_load_naming_it_and_the_fix():
    for method in ("average", "adaptersoup"):
        with pytest.raises(ConfigError, match=f"method '{method}' has no text-to-text form .*; remove it from methods "
                                              "or use task_output: head") as caught:
            load_config(None, task_output="text", methods=["adapter", method])
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="head_init': scalearn starts from the target adapter's head, and a text"):
        load_config(None, **{"task_output": "text", "methods": ["scalearn"], "transfer.head_init": {"default": "own"}})


def test_pemt_and_fusion_plan_text_fits_over_text_sources_pemts_with_prompts():
    plan = _plan(load_config(None, backbone="t5", task_output="text", methods=["adapter", "pemt", "adapterfusion"]))
    assert {(f.method, f.task_output) for f in plan.fits} == {("pemt", "text"), ("adapterfusion", "text")}
    assert {(s.with_prompt, s.task_output) for s in plan.sources} == {(True, "text"), (False, "text")}


def test_a_head_rate_of_its_own_reaches_its_fits_keys_and_unset_keeps_them():
    def fit(**transfer):
        cfg = PipelineConfig(name="keys", transfer=transfer, methods=["adapter", "scalearn", "average"])
        return _fit(_plan(cfg), "scalearn")

    plain, own_rate = fit(), fit(head_learning_rate={"scalearn": 0.001})
    assert "head_learning_rate" not in plain.train.to_dict()  # units trained before the setting keep their keys
    assert plain.key == fit(head_learning_rate={"average": 0.001}).key != own_rate.key
    assert (own_rate.train.learning_rate, own_rate.train.head_learning_rate) == (plain.train.learning_rate, 0.001)
    for transfer, message in [({"head_learning_rate": {"scalearn": 0}}, "must give positive rates"),
                              ({"head_learning_rate": {"adapterz": 0.1}}, "has unknown method")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, methods=["scalearn"], transfer=transfer)
    with pytest.raises(ConfigError, match="head_learning_rate': a text-to-text model has no head"):
        load_config(None, task_output="text", methods=["scalearn"], transfer={"head_learning_rate": {"default": 0.1}})
