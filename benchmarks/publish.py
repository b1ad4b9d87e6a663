"""Where a benchmark's write-up goes: `benchmarks/results/<stem>.md` and its block in BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

from peft_core.errors import AdapterflowError

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"


def publish_results(stem: str, lines: list[str]) -> str:
    """Write `lines` as `<stem>.md` in RESULTS and as BENCHMARKS.md's `<stem>` block; returns the text."""
    body = "\n".join(lines)
    (RESULTS / f"{stem}.md").write_text(body)
    update_benchmarks_md(stem, body)
    return body


def update_benchmarks_md(block_name: str, body: str) -> None:
    """Replace a generated block of BENCHMARKS.md (between its two marker comments) with `body`,
    whose images are files in benchmarks/results/ named `<block_name>-...`."""
    start, end = f"<!-- {block_name}:start -->", f"<!-- {block_name}:end -->"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else ""
    if start not in text or end not in text:
        raise AdapterflowError(f"{BENCHMARKS_MD} has no '{start}' ... '{end}' block; add those two lines where the "
                               f"{block_name} results belong")
    # Headings move down two levels and image links point into benchmarks/results/.
    block = body.replace("\n## ", "\n#### ").replace("# ", "### ", 1)
    block = block.replace(f"]({block_name}-", f"](benchmarks/results/{block_name}-")
    before, rest = text.split(start, 1)
    BENCHMARKS_MD.write_text(f"{before}{start}\n{block}\n{end}{rest.split(end, 1)[1]}")

