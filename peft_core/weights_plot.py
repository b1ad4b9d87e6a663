"""Pictures of a fit's weights (ScaLearn ω, PEMT gates, fusion attention): sites × sources heatmaps.

Off the compute path: the transfer unit saves `weights.png` in a fit's artifact folder, benchmarks draw
several per figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

WEIGHTS_PLOT = "weights.png"


def weight_rows(report: dict) -> list[tuple[str, list[float]]]:
    """(site, weights per source) for every site that has weights."""
    return [(site, w) for site, w in zip(report["sites"], report["weights"]) if w is not None]


def draw_weights_heatmap(ax, report: dict, sources: Sequence[str], title: str | None = None):
    """Draw a sites × sources heatmap of `report["weights"]` on matplotlib `ax`; returns the image."""
    rows = weight_rows(report)
    matrix = [w for _, w in rows]
    image = ax.imshow(matrix, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(sources)), labels=list(sources), rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels=[site for site, _ in rows])
    ax.set_xlabel("source")
    ax.set_ylabel("site (layer.position)")
    if len(sources) * len(rows) <= 200:
        low, high = image.get_clim()
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                dark_cell = value < (low + high) / 2
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if dark_cell else "black", fontsize=7)
    if title:
        ax.set_title(title)
    ax.figure.colorbar(image, ax=ax)
    return image


def plot_weights_heatmap(report: dict, sources: Sequence[str], path: Path, *, title: str | None = None) -> Path | None:
    """A sites × sources heatmap of `report["weights"]` as PNG; None when there is nothing to draw."""
    rows = weight_rows(report)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(sources), 1.0 + 0.45 * len(rows)))
    draw_weights_heatmap(ax, report, sources, title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
