"""The Dai & Zhu 2018 example, reduced: escape times follow the first-passage formula in η/b,
and the flat minimum is reached sooner at larger η/b.

Oracle: the exact mean first-passage time of the 1-D SDE (numerical double integral,
``critbatch.theory.dai_zhu2018.mean_first_passage_time``) against the Rust core's Monte Carlo
(800 seeds per cell, fixed sweep seeds). Tolerance per cell: 3 standard errors of the Monte Carlo
mean plus 5 % for the remaining Euler-Maruyama error; the formula is evaluated with the
discrete-monitoring shift of the barrier (see the example's docstring).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from examples import dai_zhu2018_escape as ex

CELLS = list(ex.escape_cells(reduced=True)[["lr", "batch_size"]].itertuples(index=False))


@pytest.fixture(scope="module")
def result():
    return ex.run(reduced=True)


def _cell(result, lr, b):
    e = result.escape
    return e[(e["lr"] == lr) & (e["batch_size"] == b)].iloc[0]


def test_escape_cells_are_the_grid_cells_with_barrier_over_d_in_range():
    cells = ex.escape_cells(reduced=True)
    # D = lr sigma^2 / (2 b), written out here
    ratio = ex.BARRIER / (cells["lr"] * ex.NOISE_STD**2 / (2 * cells["batch_size"]))
    assert ratio.between(1.0, 5.5).all()
    assert len(cells) == 8  # of the 3 x 4 grid, the 4 cells outside [1, 5.5] are left out


@pytest.mark.parametrize(("lr", "b"), CELLS, ids=[f"lr={lr:g},b={b}" for lr, b in CELLS])
def test_escape_time_matches_first_passage_formula(result, lr, b):
    cell = _cell(result, lr, b)
    assert cell["n_reached"] == cell["n_runs"]
    # 3 s.e. of the Monte Carlo mean + 5 % Euler-Maruyama allowance
    assert abs(cell["ratio"] - 1.0) <= 3.0 * cell["ratio_stderr"] + 0.05


@pytest.mark.parametrize(
    "b_over_lr", sorted({b / lr for lr, b in CELLS}), ids=lambda u: f"b/lr={u:g}"
)
def test_escape_time_in_time_units_depends_on_lr_over_b_only(result, b_over_lr):
    e = result.escape
    cells = e[np.isclose(e["batch_size"] / e["lr"], b_over_lr)]
    assert len(cells) >= 2
    lo, hi = cells.loc[cells["mean_time"].idxmin()], cells.loc[cells["mean_time"].idxmax()]
    spread = math.hypot(lo["stderr_time"], hi["stderr_time"])
    # same η/b, different η: equal within 3 s.e. of the difference + 10 % (the discrete
    # corrections differ between the cells by up to ~8 %)
    assert hi["mean_time"] - lo["mean_time"] <= 3.0 * spread + 0.10 * lo["mean_time"]


def test_escape_time_grows_exponentially_with_b_over_lr(result):
    e = result.escape
    means = e.groupby(e["batch_size"] / e["lr"])["mean_time"].mean().sort_index()
    assert all(a * 2 < b for a, b in itertools.pairwise(means))


def test_flat_minimum_fraction_rises_with_lr_over_b(result):
    order = result.flat.sort_values("lr_over_b")
    lo, hi = order.iloc[0], order.iloc[-1]
    assert result.spearman_flat_vs_lr_over_b >= 0.7
    assert lo["flat_fraction"] <= 0.1
    assert hi["flat_fraction"] >= 0.5
    # 3 binomial s.e. + 0.05 for the finite budget and the discretization
    assert abs(hi["flat_fraction"] - hi["gibbs"]) <= 3 * hi["stderr"] + 0.05


def test_gibbs_mass_prefers_flat_minimum_and_tends_to_laplace_limit(result):
    gibbs = result.flat["gibbs"]
    assert gibbs.between(0.5, result.asymptotic_flat_fraction + 1e-3).all()
    assert ex.gibbs_flat_fraction(0.01) == pytest.approx(result.asymptotic_flat_fraction, abs=0.01)


def test_report_and_figure(result, tmp_path):
    text = ex.report(result)
    assert "VERDICT: escape time REPRODUCED" in text
    assert "flat-minimum preference REPRODUCED" in text
    path = ex.figure(result, tmp_path)
    assert path.exists()
    assert path.stat().st_size > 10_000
