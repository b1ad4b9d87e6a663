"""Weight heatmaps show differences as they are: each cell's value printed, the colours on the method's
own scale (ScaLearn's ω centred on their start, shares from 0 to 1) rather than the values' min–max."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import benchmarks.weights_figures as weights_figures  # noqa: E402
from peft_core.compositions.scalearn import init_omega  # noqa: E402
from peft_core.weights_plot import draw_weights_heatmap, weight_scale  # noqa: E402

SOURCES = ["mnli", "qnli", "sst2", "rte"]


def _drawn(weights: list[list[float]], method: str):
    fig, ax = plt.subplots()
    image = draw_weights_heatmap(ax, {"sites": [f"{i}.ffn" for i in range(len(weights))], "weights": weights},
                                 SOURCES, method=method)
    texts = [t.get_text() for t in ax.texts]
    label = fig.axes[-1].get_ylabel()  # the colour bar's
    plt.close(fig)
    return image, texts, label


def test_omega_that_stayed_near_their_start_are_not_stretched_into_contrasts():
    image, texts, label = _drawn([[0.496, 0.502, 0.506, 0.5], [0.499, 0.501, 0.5, 0.504]], "scalearn")
    assert image.get_clim() == pytest.approx((0.0, 1.0))  # 2/K ± 2/K, not 0.496–0.506
    assert image.norm.vcenter == pytest.approx(0.5)
    assert texts == ["0.50", "0.50", "0.51", "0.50", "0.50", "0.50", "0.50", "0.50"]
    assert "2/K = 0.50" in label


def test_omega_that_moved_far_widen_the_scale_evenly_around_the_start():
    image, _, _ = _drawn([[1.7, 0.5, 0.2, -0.1]], "scalearn_plus_plus")
    assert image.get_clim() == pytest.approx((-0.7, 1.7))


def test_shares_run_from_0_to_1_with_uniform_at_the_centre():
    image, texts, label = _drawn([[0.26, 0.24, 0.25, 0.25]], "pemt")
    assert image.get_clim() == pytest.approx((0.0, 1.0)) and image.norm.vcenter == pytest.approx(0.25)
    assert texts == ["0.26", "0.24", "0.25", "0.25"] and "1/K = 0.25" in label


def test_the_scale_starts_where_scalearn_initialises_omega():
    assert weight_scale("scalearn", 4, []).start == pytest.approx(init_omega(4, 4096).mean().item(), abs=1e-3)


def test_benchmark_figures_draw_each_method_on_its_own_scale(tmp_path, monkeypatch):
    import peft_core.weights_plot as weights_plot

    methods = []
    draw = weights_plot.draw_weights_heatmap
    monkeypatch.setattr(weights_plot, "draw_weights_heatmap",
                        lambda *args, method=None: methods.append(method) or draw(*args, method=method))
    report = {"sources": SOURCES, "sites": ["0.ffn"], "weights": [[0.5, 0.5, 0.5, 0.5]]}
    assert weights_figures.plot_target_heatmaps({"scalearn": report, "pemt": report}, "rte", tmp_path / "w.png")
    assert methods == ["scalearn", "pemt"]
