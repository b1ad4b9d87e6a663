"""The cache-key rule (peft_core/compute_versions.py), in both directions."""

import shutil

import pytest

from peft_core import compute_versions
from peft_core.compute_versions import COMPONENTS, UNIT_COMPONENTS, code_digest, versions_for
from tasks.keys import unit_key


def test_every_compute_module_matches_its_recorded_digest():
    """Fails after an edit to a module on a compute path until its version decision is recorded."""
    changes = compute_versions.unrecorded_changes()
    assert not changes, (
        f"compute code changed: {changes}. If the change can alter what a unit computes, bump that "
        "component's version in peft_core/compute_versions.py; then run "
        "`python -m peft_core.compute_versions --record` either way")


def test_every_module_of_peft_core_is_classified():
    assert compute_versions.unclassified_modules() == []


def test_comments_docstrings_and_formatting_do_not_change_a_digest(tmp_path, monkeypatch):
    (tmp_path / "m.py").write_text('"""Doc."""\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n')
    monkeypatch.setattr(compute_versions, "ROOT", tmp_path)
    before = code_digest("m.py")
    (tmp_path / "m.py").write_text('"""Other doc."""\n\n\ndef f(x):\n    # a comment\n    return (x + 1)\n')
    assert code_digest("m.py") == before
    (tmp_path / "m.py").write_text('def f(x):\n    return x + 2\n')
    assert code_digest("m.py") != before


def test_a_version_bump_changes_exactly_the_keys_of_units_on_that_path(monkeypatch):
    parts = {"task": "rte", "data": "abc", "train": {"learning_rate": 1e-3}}
    before = {kind: unit_key(kind, **parts) for kind in UNIT_COMPONENTS}
    version, modules = COMPONENTS["transfer"]
    monkeypatch.setitem(COMPONENTS, "transfer", (version + 1, modules))
    after = {kind: unit_key(kind, **parts) for kind in UNIT_COMPONENTS}
    changed = {kind for kind in UNIT_COMPONENTS if before[kind] != after[kind]}
    assert changed == {kind for kind, comps in UNIT_COMPONENTS.items() if "transfer" in comps} == {"transfer"}


def test_a_new_module_or_an_edit_off_the_compute_path_keeps_every_key(tmp_path, monkeypatch):
    root = tmp_path / "peft_core"
    shutil.copytree(compute_versions.ROOT, root)
    monkeypatch.setattr(compute_versions, "ROOT", root)
    keys = {kind: unit_key(kind, task="rte") for kind in UNIT_COMPONENTS}
    (root / "compositions" / "new_method.py").write_text("def build(banks, adapter):\n    return []\n")
    (root / "new_module.py").write_text("X = 1\n")
    with (root / "transfer.py").open("a") as f:
        f.write("\n\ndef plot_something():\n    return None\n")  # e.g. a plot added beside the maths
    compute_versions.current_digests.cache_clear()
    try:
        assert {kind: unit_key(kind, task="rte") for kind in UNIT_COMPONENTS} == keys
        changes = compute_versions.unrecorded_changes()  # but the decision is asked for
        assert "transfer: transfer.py" in changes and "transfer: compositions/new_method.py" in changes
        assert compute_versions.unclassified_modules() == ["new_module.py"]  # a method module is placed by itself
    finally:
        compute_versions.current_digests.cache_clear()


def test_settings_left_unset_do_not_change_a_key():
    assert unit_key("adapter", train={"lr": 1e-3}) == unit_key("adapter", train={"lr": 1e-3, "max_steps": None})
    assert unit_key("adapter", train={"lr": 1e-3}) != unit_key("adapter", train={"lr": 1e-3, "max_steps": 100})


def test_every_module_of_compositions_is_on_the_transfer_path_but_single_is_the_models():
    compositions = sorted(p.relative_to(compute_versions.ROOT).as_posix()
                          for p in (compute_versions.ROOT / "compositions").glob("*.py"))
    transfer, model = compute_versions.modules_of("transfer"), compute_versions.modules_of("model")
    assert set(transfer) == {"transfer.py", *compositions} - {"compositions/single.py"}
    assert "compositions/single.py" in model and not set(transfer) & set(model)


@pytest.mark.parametrize("kind", list(UNIT_COMPONENTS))
def test_every_unit_kind_is_keyed_by_its_components_versions(kind):
    assert set(versions_for(kind)) == set(UNIT_COMPONENTS[kind]) and "encoding" in versions_for(kind)
