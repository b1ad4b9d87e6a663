"""Where a benchmark's write-up goes: `benchmarks/results/<stem>.md` and its block in BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from peft_core.errors import AdapterflowError

if TYPE_CHECKING:
    from flows.config import PipelineConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"


def publish_results(stem: str, lines: list[str]) -> str:
    """Write `lines` as `<stem>.md` in RESULTS and as BENCHMARKS.md's `<stem>` block; returns the text."""
    body = "\n".join(lines)
    (RESULTS / f"{stem}.md").write_text(body)
    update_benchmarks_md(stem, body)
    return body


def write_result_files(stem: str, result: dict, table: str) -> None:
    """Print `table` and write `<stem>.json` (the raw result) and `<stem>.md` (the table) in RESULTS."""
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (RESULTS / f"{stem}.md").write_text(table)


def require_block(block_name: str) -> str:
    """BENCHMARKS.md's text, or a clear error when it has no `block_name` block: a benchmark calls this
    before it trains, so that a missing block stops it at the start instead of after the run."""
    start, end = _markers(block_name)
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else ""
    if start not in text or end not in text:
        raise AdapterflowError(f"{BENCHMARKS_MD} has no '{start}' ... '{end}' block; add those two lines where the "
                               f"{block_name} results belong")
    return text


def _markers(block_name: str) -> tuple[str, str]:
    return f"<!-- {block_name}:start -->", f"<!-- {block_name}:end -->"


def update_benchmarks_md(block_name: str, body: str) -> None:
    """Replace a generated block of BENCHMARKS.md (between its two marker comments) with `body`,
    whose images are files in benchmarks/results/ named `<block_name>-...`."""
    text = require_block(block_name)
    start, end = _markers(block_name)
    # Headings move down two levels and image links point into benchmarks/results/.
    block = body.replace("\n## ", "\n#### ").replace("# ", "### ", 1)
    block = block.replace(f"]({block_name}-", f"](benchmarks/results/{block_name}-")
    before, rest = text.split(start, 1)
    BENCHMARKS_MD.write_text(f"{before}{start}\n{block}\n{end}{rest.split(end, 1)[1]}")


def environment(cfg: PipelineConfig) -> dict[str, str]:
    """The machine, device, versions, commit and backbone a results file names."""
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "peft_core", "tasks", "flows", "configs"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("torch", "transformers", "prefect", "mlflow"))
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "versions": f"Python {platform.python_version()}, {versions}",
        "code": f"adapterflow {commit}" + (" (uncommitted changes)" if dirty else ""),
        "backbone": cfg.backbone,
    }
