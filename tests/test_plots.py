"""Figures: the K(b) and b·K(b) panels show the tuned table, the fits and their b*."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PathCollection

import critbatch as cb
from critbatch import plots
from critbatch.fit import LAWS, fit
from critbatch.tuning import best_learning_rate

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def sweep():
    return cb.sweep(
        cb.problems.nqm_power_law(8),
        ["sgd", "heavy_ball"],
        [1, 4, 16, 64, 256],
        [0.05, 0.2, 0.8],
        3,
        cb.targets.target(loss_below=0.05, max_steps=5000),
    )


def test_figure_renders_to_png_with_the_tuned_points_and_the_fitted_b_star(sweep, tmp_path):
    fits = fit(sweep, n_boot=20)
    assert set(fits) == {("nqm", "sgd", "constant"), ("nqm", "heavy_ball", "constant")}
    fig = plots.kb_figure(sweep, fits=fits)
    ax_k, ax_n = fig.axes
    table = best_learning_rate(sweep)
    finite = table[np.isfinite(table.steps)]
    offsets = [
        c.get_offsets()
        for c in ax_k.collections
        if isinstance(c, PathCollection) and len(c.get_offsets())
    ]
    points = np.vstack(offsets)
    assert len(points) == len(finite)
    for b, k in zip(finite.batch_size, finite.steps, strict=True):
        assert np.any(np.all(np.isclose(points, [b, k]), axis=1)), (b, k)
    lines_x = {
        round(float(line.get_xdata()[0]), 6)
        for line in ax_n.get_lines()
        if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
    }
    legend = " ".join(t.get_text() for t in ax_k.get_legend().get_texts())
    for result in fits.values():
        if result.status in ("identified", "poor_fit"):
            assert round(result.critical_batch_size, 6) in lines_x
        else:  # no line where b* is not identified, and the legend says why
            assert all(abs(x - result.estimate) > 1e-6 for x in lines_x)
            assert {
                "above_grid": "b* > b_max",
                "below_grid": "b* < b_min",
                "not_identified": "not identified",
            }[result.status] in legend
    path = tmp_path / "kb.png"
    plots.save(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_band_is_the_percentile_envelope_of_the_bootstrap_curves():
    law = LAWS["mccandlish"]
    rng = np.random.default_rng(0)
    samples = {"location": 3 + 0.1 * rng.random(50), "beta": 4 + rng.random(50)}
    result = SimpleNamespace(model="mccandlish", bootstrap_samples=samples)
    b = np.array([1.0, 10.0, 100.0])
    low, high = plots._band(result, b, 0.9)
    curves = np.array(
        [
            law.steps(b, {"s_min": np.exp(c), "b_noise": np.exp(beta)})
            for c, beta in zip(samples["location"], samples["beta"], strict=True)
        ]
    )
    np.testing.assert_allclose(low, np.percentile(curves, 5, axis=0))
    np.testing.assert_allclose(high, np.percentile(curves, 95, axis=0))
    assert plots._band(SimpleNamespace(model="mccandlish", bootstrap_samples={}), b, 0.9) is None


def test_a_problem_where_nothing_reached_still_draws():
    res = cb.sweep(
        cb.problems.nqm_power_law(4),
        "sgd",
        [1, 2, 4],
        [0.1],
        2,
        cb.targets.target(loss_below=-1.0, max_steps=20),
    )
    fig = plots.kb_figure(res)
    assert "no batch size reached" in fig.axes[0].texts[0].get_text()
