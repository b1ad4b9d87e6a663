"""Pictures of a fit's weights (ScaLearn ω, PEMT gates, fusion attention): sites × sources heatmaps.

Off the compute path: the transfer unit saves `weights.png` in a fit's artifact folder, benchmarks draw
several per figure. Every cell carries its value, and the colours keep the method's own scale (see
`weight_scale`) rather than stretching over the values drawn: ω that all stayed near their start
look alike, as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peft_core.method_names import SCALEARN_VARIANTS

WEIGHTS_PLOT = "weights.png"
SCALEARN_OMEGA_START_TIMES_K = 2.0  # ScaLearn's ω start at 2/K (compositions/scalearn.py init_omega)
MAX_LABELLED_CELLS = 200  # beyond this the numbers no longer fit their cells
COLOUR_MAP = "RdBu_r"  # white at the scale's start, blue below it, red above


@dataclass(frozen=True)
class WeightScale:
    """A heatmap's colour scale: white at `start`, the value every weight starts from, and the ends
    at `low` and `high`; `label` says so beside the colour bar."""

    start: float
    low: float
    high: float
    label: str


def weight_scale(method: str | None, num_sources: int, values: Sequence[float]) -> WeightScale:
    """ScaLearn's ω: centred on their start 2/K, as far on each side as the furthest ω has gone and at
    least down to 0 (a source switched off). Shares that sum to 1 over the sources (PEMT's gate,
    AdapterFusion's attention, averaging's and AdapterSoup's coefficients; a method not named): from 0
    to 1, white at the uniform 1/K."""
    if method in SCALEARN_VARIANTS:
        start = SCALEARN_OMEGA_START_TIMES_K / num_sources
        reach = max([start, *(abs(v - start) for v in values)])
        return WeightScale(start, start - reach, start + reach, f"ω (start 2/K = {start:.2f})")
    start = 1.0 / num_sources
    low, high = min([0.0, *values]), max([1.0, *values])
    return WeightScale(start, low, high, f"share (uniform 1/K = {start:.2f})")


def weight_rows(report: dict) -> list[tuple[str, list[float]]]:
    """(site, weights per source) for every site that has weights."""
    return [(site, w) for site, w in zip(report["sites"], report["weights"]) if w is not None]


def draw_weights_heatmap(ax, report: dict, sources: Sequence[str], title: str | None = None, *,
                         method: str | None = None):
    """Draw a sites × sources heatmap of `report["weights"]` of a `method` fit on matplotlib `ax`, on
    `weight_scale`'s colours with each cell's value; returns the image."""
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm

    rows = weight_rows(report)
    matrix = [w for _, w in rows]
    scale = weight_scale(method, len(sources), [v for row in matrix for v in row])
    norm = TwoSlopeNorm(vcenter=scale.start, vmin=min(scale.low, scale.start - 1e-9),
                        vmax=max(scale.high, scale.start + 1e-9))
    cmap = colormaps[COLOUR_MAP]
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, norm=norm)
    ax.set_xticks(range(len(sources)), labels=list(sources), rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels=[site for site, _ in rows])
    ax.set_xlabel("source")
    ax.set_ylabel("site (layer.position)")
    if len(sources) * len(rows) <= MAX_LABELLED_CELLS:
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                red, green, blue, _ = cmap(norm(value))
                dark_cell = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if dark_cell else "black", fontsize=7)
    if title:
        ax.set_title(title)
    ax.figure.colorbar(image, ax=ax).set_label(scale.label, fontsize=8)
    return image


def plot_weights_heatmap(report: dict, sources: Sequence[str], path: Path, *, title: str | None = None,
                         method: str | None = None) -> Path | None:
    """A sites × sources heatmap of `report["weights"]` of a `method` fit as PNG; None when there is
    nothing to draw."""
    rows = weight_rows(report)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(sources), max(2.4, 1.0 + 0.45 * len(rows))))
    draw_weights_heatmap(ax, report, sources, title, method=method)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
