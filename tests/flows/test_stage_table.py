"""One stage table (tasks/stage_table.py) that the CLI, the config, the flows, the deployments and the
report read: each of them follows it, and a prefect.yaml that does not is refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows import cli, stages
from flows.deployments import DEPLOYABLE, PREFECT_FILE, check_prefect_file
from peft_core.errors import ConfigError
from tasks import reporting
from flows.config import load_config
from tasks.stage_table import (FORCEABLE_STAGES, JOINT_MODEL_TAG, REPORTED_STAGES, RUNNABLE, STAGE_NAMES, STAGES,
                               stage_of_tag)


def test_the_table_orders_the_stages_and_says_which_have_units_and_rows():
    assert STAGE_NAMES == ("prepare", "sources", "transfer", "multitask", "evaluate")
    assert FORCEABLE_STAGES == ("sources", "transfer", "multitask", "evaluate")
    assert REPORTED_STAGES == ("sources", "transfer", "multitask")
    assert all(s.description for s in STAGES)


def test_every_reader_takes_the_table():
    assert cli.STAGE_NAMES == RUNNABLE and cli.FORCEABLE_STAGES == FORCEABLE_STAGES
    assert tuple(stages.STAGE_FLOWS) == RUNNABLE and stages.STAGES == STAGE_NAMES
    assert tuple(DEPLOYABLE) == RUNNABLE
    assert all(DEPLOYABLE[s.name].description == s.description for s in STAGES)
    assert reporting.REPORTED_STAGES == REPORTED_STAGES


def test_force_stages_validates_against_the_table():
    assert load_config(force_stages=list(FORCEABLE_STAGES)).force_stages == list(FORCEABLE_STAGES)
    with pytest.raises(ConfigError, match="force_stages"):
        load_config(force_stages=["prepare"])  # no units to retrain


def test_a_joint_model_run_is_a_multitask_unit_and_no_report_row():
    assert stage_of_tag(JOINT_MODEL_TAG) == "multitask" and stage_of_tag("transfer") == "transfer"
    assert JOINT_MODEL_TAG not in REPORTED_STAGES
    with pytest.raises(KeyError):
        stage_of_tag("no-such-stage")


def test_the_projects_prefect_yaml_deploys_exactly_the_table():
    check_prefect_file(yaml.safe_load(PREFECT_FILE.read_text())["deployments"], PREFECT_FILE, complete=True)


def test_a_prefect_yaml_off_the_table_is_refused_with_one_line():
    entries = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
    where = Path("prefect.yaml")
    with pytest.raises(ConfigError, match=r"prefect.yaml: unknown entrypoint\(s\) flows/deployments.py:train"):
        check_prefect_file([*entries, {"entrypoint": "flows/deployments.py:train"}], where)
    check_prefect_file(entries[:2], where)  # serving a few stages is fine
    with pytest.raises(ConfigError, match="no deployment for flows/deployments.py:evaluate"):
        check_prefect_file(entries[:-1], where, complete=True)
