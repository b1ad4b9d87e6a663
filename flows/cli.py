"""`adapterflow`: run the pipeline or one stage, list tasks, print the comparison report, start
local Prefect and MLflow servers, serve the Prefect deployments, predict with fitted units, export
finished units to a folder and import them into another store.

Every command ends a user error (an `AdapterflowError`) the same way: exit code 2, no traceback,
and the message as the last line printed (see `logging_filters` for Prefect's own log lines).
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer (0.29) parses with its own click
from typer.core import TyperGroup

from flows import logging_filters
from flows.config import DATA_DIR_ENV, PipelineConfig, given, load_config, parse_overrides
from tasks.stage_table import FORCEABLE_STAGES, RUNNABLE as STAGE_NAMES
from peft_core.errors import AdapterflowError, ConfigError


class _UserErrorsEndTheCommand(TyperGroup):
    """The one error boundary of every command, those added later included: user errors and the
    command line's own usage errors (a bad option value, an extra argument) end the same way."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AdapterflowError as exc:
            _fail(str(exc))
        except UsageError as exc:  # a command's own arguments, parsed here
            _usage_error(exc)


def _usage_error(exc: UsageError) -> None:
    if isinstance(exc, NoArgsIsHelpError):
        raise exc  # `adapterflow` alone: the help
    where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx else ""
    _fail(exc.format_message().rstrip(".") + where)


app = typer.Typer(cls=_UserErrorsEndTheCommand, add_completion=False, no_args_is_help=True,
                  help=__doc__.split("\n\n")[0])
# Logs and CI have no terminal: give the results table room instead of rich's 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=170)
err = Console(stderr=True)
# On exit the interpreter runs its cycle collector over every object torch, transformers and MLflow made
# (~1.5 s after a `predict`); frozen first, they are left to the OS, which reclaims the memory anyway.
atexit.register(gc.freeze)

def _fail(message: str) -> None:
    """Print the error last (after any other unit's error that Prefect's logs held back) and exit 2."""
    for other in logging_filters.logged_user_errors():
        if other != message:
            err.print(f"[bold red]error (another unit):[/] {escape(other)}", highlight=False, soft_wrap=True)
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _quiet_libraries(errors_shown_last: bool = False, loads_models: bool = True) -> None:
    """`loads_models`: quiet transformers too; a command that loads none (`report`) skips importing it (~0.5 s)."""
    if loads_models:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging_filters.install(shown_by_cli=errors_shown_last)


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="YAML config; omit for the built-in demo"),
    stage: Optional[str] = typer.Option(None, help=f"run one stage: {', '.join(STAGE_NAMES)}"),
    data_dir: Optional[Path] = typer.Option(None, help=f"data folder for data.source 'local' (or ${DATA_DIR_ENV})"),
    force: bool = typer.Option(False, "--force", help="retrain every unit even if MLflow has it finished"),
    force_stage: list[str] = typer.Option([], "--force-stage", help="retrain this stage's units (repeatable)"),
    set_: list[str] = typer.Option([], "--set", help="override a config key, KEY=VALUE with VALUE read as YAML "
                                   "(repeatable), e.g. --set training.sources.epochs=3 --set seeds=[1,2]"),
) -> None:
    """Run the pipeline (or one stage) and print the comparison table."""
    if stage is not None and stage not in STAGE_NAMES:
        raise ConfigError(f"unknown stage '{stage}'; choose one of: {', '.join(STAGE_NAMES)}")
    unknown = [s for s in force_stage if s not in FORCEABLE_STAGES]
    if unknown:
        raise ConfigError(f"unknown --force-stage {unknown[0]!r}; choose from: {', '.join(FORCEABLE_STAGES)}")
    forced = list(FORCEABLE_STAGES) if force else force_stage
    options = {"data.path": str(data_dir) if data_dir else None, "force_stages": forced or None}
    cfg = _config(config, **(parse_overrides(set_) | given(options)))
    _check_inputs(cfg)
    _use_servers(cfg)
    _check_servers(cfg)
    _quiet_libraries(errors_shown_last=True)
    from flows.stages import run_stage

    run_stage(cfg, None if stage == "pipeline" else stage)
    if stage != "prepare":
        _print_report(cfg, "table", config_path=config)


def _config(path: Path | None, **overrides) -> PipelineConfig:
    """The command's config, its home folder created before Prefect (whose own home is in it) starts."""
    cfg = load_config(path, **overrides)
    cfg.ensure_home()
    return cfg


def _tracked_config(config: Path | None, experiment: str | None, loads_models: bool = True) -> PipelineConfig:
    """The config of a command that reads MLflow: its experiment, the running servers, quiet libraries."""
    cfg = _config(config, **given({"tracking.experiment": experiment}))
    _use_servers(cfg)
    _quiet_libraries(loads_models=loads_models)
    return cfg


def _use_servers(cfg: PipelineConfig) -> None:
    """Use the servers `adapterflow up` keeps for this config's home (before Prefect is imported)."""
    from flows.servers import use_running_servers

    for var, url in use_running_servers(cfg.home_dir()).items():
        err.print(f"using `adapterflow up`'s server: {var}={url}", highlight=False)


def _check_inputs(cfg: PipelineConfig) -> None:
    """What can be checked before any server starts: the data folder, the tasks' files, the backbone folder."""
    from peft_core.backbone_paths import check_architecture

    path = cfg.data.resolved_path()
    if path is not None and not path.is_dir() and any(t not in cfg.tasks for t in cfg.data_tasks()):
        raise ConfigError(
            f"data folder {path} does not exist; pass --data-dir PATH, set ${DATA_DIR_ENV}, "
            "or use data.source: hub in the config"
        )
    for name in cfg.data_tasks():
        for split, files in cfg.task_declaration(name).data.files().items():
            missing = [f for f in files if not Path(f).exists()]
            if missing:
                raise ConfigError(f"task {name}: its {split} file {missing[0]} does not exist; fix the path "
                                  f"(tasks.{name}.data.{split} in the config, relative to the config file) or "
                                  "the data folder (--data-dir)")
    check_architecture(cfg.backbone, cfg.task_output)


def _check_servers(cfg: PipelineConfig) -> None:
    """A tracking or Prefect server that does not answer fails the run now, in seconds, in one line."""
    from flows.servers import check_prefect_api
    from flows.store import tracking_for
    from tasks.tracking import check_tracking_server

    check_tracking_server(tracking_for(cfg).uri)
    check_prefect_api()


@app.command("tasks")
def list_tasks_command(
    config: Optional[Path] = typer.Argument(None, help="a config: its declared tasks are listed too"),
    check: bool = typer.Option(False, "--check", help="load every task the config trains on and print its rows "
                               "per split and per label, as the pipeline will see them"),
    data_dir: Optional[Path] = typer.Option(None, help=f"data folder for data.source 'local' (or ${DATA_DIR_ENV})"),
) -> None:
    """List the built-in tasks and the config's own; --check loads the config's tasks."""
    from flows.task_listing import task_rows

    cfg = load_config(config, **given({"data.path": str(data_dir) if data_dir else None}))
    table = Table("task", "benchmark", "problem", "inputs", "labels", "metrics", "in this config", "description")
    for row in task_rows(cfg):
        table.add_row(*row)
    console.print(table)
    if check:
        _print_task_check(cfg)


def _print_task_check(cfg: PipelineConfig) -> None:
    from flows.task_listing import check_tasks

    table = Table("task", "split", "rows", "per label", title="what the pipeline will read (before data.few_shot)")
    for name, split, rows, labels in check_tasks(cfg):
        table.add_row(name, split, str(rows), labels)
    console.print(table)
    if cfg.data.few_shot is not None:
        console.print(f"targets then draw k = {cfg.data.few_shot.k} training examples per seed (data.few_shot)",
                      highlight=False)


@app.command()
def report(
    config: Optional[Path] = typer.Option(None, "--config", help="the config you ran: its home, tracking and "
                                          "experiment (default: the demo's home, every experiment in it)"),
    experiment: Optional[str] = typer.Option(None, help="MLflow experiment (default: the config's name)"),
    run_id: Optional[str] = typer.Option(None, "--run", help="pipeline run id (default: the latest finished run)"),
    format: str = typer.Option("table", "--format", help="table, csv or markdown"),
) -> None:
    """Print the comparison of a pipeline run (the latest finished one), read back from MLflow."""
    if format not in ("table", "csv", "markdown"):
        raise ConfigError(f"unknown format '{format}'; use table, csv or markdown")
    cfg = _tracked_config(config, experiment, loads_models=False)
    _print_report(cfg, format, run_id, all_experiments=config is None and experiment is None, config_path=config)


def _print_report(cfg: PipelineConfig, fmt: str, run_id: str | None = None, all_experiments: bool = False,
                  config_path: Path | None = None) -> None:
    from tasks.reporting import choose_pipeline_run, comparison_table, to_csv, to_markdown, transfer_summary
    from flows.store import tracking_for

    tracking = tracking_for(cfg)
    chosen = choose_pipeline_run(tracking, run_id, all_experiments)
    if chosen.note:
        err.print(f"note: {chosen.note}", highlight=False, soft_wrap=True)
    table = comparison_table(tracking, chosen.run.info.run_id)
    if fmt == "csv":
        err.print(chosen.title(), highlight=False, soft_wrap=True)  # stdout stays one CSV table
        to_csv(table, sys.stdout)
        return
    if fmt == "markdown":
        print(f"**{chosen.title()}**\n\n{to_markdown(table)}")
        return
    console.print(_rich_table(table, chosen.title()))
    if table.empty:
        console.print("This run has no finished units yet.")
    for line in transfer_summary(table, tracking):
        console.print(line, highlight=False)
    console.print(f"MLflow store: {tracking.uri}")
    for line in _ui_hints(tracking.uri, config_path):
        console.print(line, highlight=False, soft_wrap=True)


def _ui_hints(tracking_uri: str, config_path: Path | None) -> list[str]:
    """Where to see the runs: the servers in use, or `adapterflow up` for those this home lacks."""
    prefect_api = os.environ.get("PREFECT_API_URL")
    shown = {"MLflow": tracking_uri if tracking_uri.startswith(("http://", "https://")) else None,
             "Prefect": prefect_api.rstrip("/").removesuffix("/api") if prefect_api else None}
    lines = [f"{name} UI: {url}" for name, url in shown.items() if url]
    missing = [name for name, url in shown.items() if not url]
    if missing:
        up = f"`.venv/bin/adapterflow up{f' {config_path}' if config_path else ''}`"
        lines.append(f"{' and '.join(missing)} UI{'s' if len(missing) > 1 else ''}: {up} serves this home's runs "
                     "and prints their addresses")
    return lines


@app.command()
def up(
    config: Optional[Path] = typer.Argument(None, help="config whose home the servers serve; omit for the demo's"),
    prefect_port: int = typer.Option(4200, min=1, max=65535, help="Prefect server port on 127.0.0.1"),
    mlflow_port: int = typer.Option(5000, min=1, max=65535, help="MLflow server port on 127.0.0.1"),
) -> None:
    """Start a Prefect server and an MLflow server on 127.0.0.1 for the project's home; Ctrl-C stops both."""
    from flows.servers import run_servers

    run_servers(_config(config).home_dir(), prefect_port, mlflow_port, console.print)


@app.command()
def serve(
    config: Optional[Path] = typer.Argument(None, help="default config of every deployment; omit for prefect.yaml's"),
    prefect_file: Optional[Path] = typer.Option(None, help="default: the project's deployments/prefect.yaml"),
) -> None:
    """Serve the deployments of deployments/prefect.yaml from this process, no work pool needed; Ctrl-C stops."""
    from flows.servers import check_prefect_api

    cfg = _config(config)
    _use_servers(cfg)
    check_prefect_api()
    _quiet_libraries()
    from flows.deployments import PREFECT_FILE, serve_deployments

    serve_deployments(prefect_file or PREFECT_FILE, config)


UNIT_HELP = ("TARGET/METHOD of the latest pipeline run, NAME@ALIAS, models:/NAME/VERSION or an MLflow run id; "
             "several joined by commas, picked per row by a `model` column")


@app.command()
def predict(
    unit: str = typer.Argument(..., help=UNIT_HELP),
    input_file: Path = typer.Argument(..., metavar="INPUT", help=".jsonl, .tsv or .csv with the task's input fields"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help=".jsonl, .csv or .tsv (default: JSON lines on stdout)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --output file (never the input)"),
    metrics: bool = typer.Option(False, "--metrics", help="also score against the labels in the input (the task's label_field, or `label`; to stderr)"),
    batch_size: Optional[int] = typer.Option(None, min=1, help="default: the batch size the unit was evaluated with"),
    config: Optional[Path] = typer.Option(None, "--config", help="config whose tracking settings to use"),
    experiment: Optional[str] = typer.Option(None, help="MLflow experiment (default: the config's name)"),
) -> None:
    """Predict with a fitted unit: label, probabilities or a regression value per input row."""
    cfg = _tracked_config(config, experiment)
    from flows.predictions import predict_file

    scores = predict_file(cfg, unit, input_file, output, batch_size=batch_size, score=metrics, console=err,
                          overwrite=overwrite)
    if scores is not None:
        err.print(", ".join(f"{name} {value:.4f}" for name, value in scores.items()), highlight=False)


@app.command("export")
def export_command(
    folder: Path = typer.Argument(..., help="a new folder, or an earlier export to replace (with --overwrite)"),
    stage: list[str] = typer.Option([], "--stage", help="only this stage's units (repeatable), e.g. --stage sources"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the earlier export in FOLDER"),
    config: Optional[Path] = typer.Option(None, "--config", help="config whose tracking settings to use"),
    experiment: Optional[str] = typer.Option(None, help="MLflow experiment (default: the config's name)"),
) -> None:
    """Write every finished unit (adapter folders as safetensors + JSON, keys, tags, params, metrics) to a folder.

    The folder is written in one atomic step, with every file's checksum, and only where nothing is lost:
    a new folder, or an earlier export with --overwrite."""
    cfg = _tracked_config(config, experiment)
    from tasks.exchange import export_units
    from flows.store import tracking_for

    keys = export_units(tracking_for(cfg), folder, cfg.home_dir(), stage, overwrite)
    console.print(f"exported {len(keys)} unit(s) to {folder}", highlight=False)


@app.command("import")
def import_command(
    folder: Path = typer.Argument(..., help="a folder `adapterflow export` wrote"),
    config: Optional[Path] = typer.Option(None, "--config", help="config whose store and experiment receive the units"),
    experiment: Optional[str] = typer.Option(None, help="MLflow experiment (default: the config's name)"),
) -> None:
    """Add exported units to this MLflow store, so runs of the same config reuse them instead of training.

    Nothing is added unless every unit's files match their checksums and load, and were made on the
    config's backbone."""
    cfg = _tracked_config(config, experiment)
    from tasks.exchange import import_units
    from flows.store import tracking_for
    from tasks.units import registry_name

    done = import_units(tracking_for(cfg), folder, cfg.backbone,
                        lambda stage, task, method: registry_name(cfg.experiment_name(), stage, task, method),
                        cfg.home_dir() / "artifact-cache")
    console.print(f"imported {len(done['imported'])} unit(s); {len(done['present'])} already in the store",
                  highlight=False)


@app.command("export-peft")
def export_peft_command(
    unit: str = typer.Argument(..., help="a fitted LoRA unit: TARGET/METHOD of the latest pipeline run, NAME@ALIAS, "
                               "models:/NAME/VERSION, an MLflow run id or a fitted folder"),
    folder: Path = typer.Argument(..., help="a new folder, or an earlier PEFT export to replace (with --overwrite)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the earlier PEFT export in FOLDER"),
    config: Optional[Path] = typer.Option(None, "--config", help="config whose tracking settings and backbone to use"),
    experiment: Optional[str] = typer.Option(None, help="MLflow experiment (default: the config's name)"),
) -> None:
    """Write a fitted LoRA unit (a LoRA adapter, or average, AdapterSoup or a ScaLearn over LoRA sources) as a
    Hugging Face PEFT LoRA folder, which `PeftModel.from_pretrained` loads with the same outputs."""
    cfg = _tracked_config(config, experiment)
    from flows.peft_exports import export_unit_to_peft

    written = export_unit_to_peft(cfg, unit, folder, overwrite)
    console.print(f"wrote the PEFT LoRA folder {written}; load it with "
                  f"peft.PeftModel.from_pretrained(model, {str(written)!r}) (the task head is beside it, "
                  "in task_head.safetensors)", highlight=False, soft_wrap=True)


def _metrics_cell(row, prefix: str) -> str:
    from tasks.reporting import no_metrics

    cells = [f"{name[len(prefix):]} {value:.4f}" for name, value in row.items()
             if name.startswith(prefix) and value == value]  # value == value skips NaN
    return ", ".join(cells) or no_metrics(row["method"])


def _rich_table(table, title: str) -> Table:
    """One line per unit: the metrics folded into two cells so the table fits a terminal."""
    from tasks.reporting import format_cell

    out = Table("task", "method", "stage", "seed", "test", "validation", "params (head)", "time s", "peak MB", "reused",
                title=title)
    for _, row in table.iterrows():
        cell = {c: format_cell(c, row.get(c)) for c in ("seed", "trainable_params", "head_params", "wall_time_s",
                                                        "peak_memory_mb", "reused")}
        out.add_row(row["task"], row["method"], row["stage"], cell["seed"], _metrics_cell(row, "test_"),
                    _metrics_cell(row, "validation_"), f"{cell['trainable_params']} ({cell['head_params']})",
                    cell["wall_time_s"], cell["peak_memory_mb"], cell["reused"])
    return out


def main() -> None:
    app()


if __name__ == "__main__":
    main()
