"""Imports run one way, flows -> tasks -> peft_core: a lower package never imports an upper one."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"peft_core": {"tasks", "flows", "prefect", "mlflow"}, "tasks": {"flows"}}


def _imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_lower_package_imports_no_upper_one(package):
    offending = {str(p.relative_to(ROOT)): sorted(_imported_packages(p) & FORBIDDEN[package])
                 for p in sorted((ROOT / package).rglob("*.py"))}
    assert {p: names for p, names in offending.items() if names} == {}


def _run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_config_schema_loads_no_prefect_mlflow_or_torch():
    _run_python("import sys; from flows.config import load_config; load_config(); "
                "assert not {m.split('.')[0] for m in sys.modules} & {'prefect', 'mlflow', 'torch', 'transformers'}")


def test_the_cli_and_the_config_load_no_torch():
    """`adapterflow --help` and a config error take a fraction of a second, not the seconds torch takes to import."""
    _run_python(textwrap.dedent("""
        import sys
        import pytest
        import flows.cli
        from peft_core.errors import ConfigError
        from flows.config import load_config

        load_config(methods=["scalearn", "hyperformer_plus_plus_few_shot"], **{"transfer.options": {
            "scalearn": {"omega_dropout": 0.1}, "hyperformer_plus_plus_few_shot": {"init_from": "mean"}}})
        with pytest.raises(ConfigError, match="pemt has no option"):
            load_config(**{"transfer.options": {"pemt": {"omega_dropout": 0.1}}})
        flows.cli._check_inputs(load_config())  # the data and backbone folders, checked before anything starts
        loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})
        assert not loaded, loaded
    """))


def test_a_bad_predict_input_and_the_report_code_load_no_torch_or_prefect(tmp_path):
    """`predict` refuses a bad input file before it loads torch, transformers, MLflow's models or Prefect,
    and the report's code imports neither torch nor Prefect (#25: medians 1.4 s and 4.4 s, were 8.4 and 9.9; README)."""
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"sentence": "fine"}\n{"sentence": \n')
    _run_python(textwrap.dedent(f"""
        import sys
        import pytest
        from flows.predictions import predict_file
        from peft_core.errors import DataError
        from flows.config import load_config
        import tasks.reporting

        with pytest.raises(DataError, match="rows.jsonl:2"):
            predict_file(load_config(), "demo_lowres/scalearn", {str(bad)!r}, None, batch_size=None, score=False,
                         console=None)
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "transformers", "prefect"}})
        assert not loaded, loaded
    """))


def test_finding_a_fitted_unit_imports_no_prefect():
    """predict resolves units through MLflow alone: Prefect's ~2 s import stays out of it."""
    _run_python("import sys; import tasks.fitted_units; "
                "assert 'prefect' not in {m.split('.')[0] for m in sys.modules}")


def test_finding_a_fitted_unit_loads_no_torch_or_transformers(tmp_path):
    """predict finds its units in a second process while this one imports torch and transformers (#25): the
    lookup, the artifact checks it makes included, loads neither."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = tmp_path / "fit"
    folder.mkdir()
    save_file({"w": np.zeros(2, dtype=np.float32)}, folder / "adapter.safetensors")
    (folder / "adapter_config.json").write_text('{"format_version": 1, "method": "adapter", "task": {"name": "t"}}')
    _run_python(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from flows.predictions import find_units
        from tasks.fitted_units import resolve_unit

        assert resolve_unit(None, {str(folder)!r}, Path("unused")) == {{"t/adapter": Path({str(folder)!r})}}
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "transformers"}})
        assert not loaded, loaded
    """))


def test_the_metric_libraries_load_when_a_metric_is_computed():
    """sklearn.metrics and scipy.stats (~0.4 s) stay out of the code that `predict` rebuilds a fitted model with
    (its training modules import peft_core.metrics) and out of `report` (peft_core.statistics), which also
    leaves transformers unimported (#25)."""
    _run_python(textwrap.dedent("""
        import sys
        import flows.cli
        import peft_core.metrics
        import tasks.reporting

        flows.cli._quiet_libraries(loads_models=False)
        loaded = sorted({"sklearn", "scipy.stats", "transformers"} & set(sys.modules))
        assert not loaded, loaded
    """))
