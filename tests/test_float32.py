"""``dtype="float32"`` on the Rust core: the exact NQM oracles, the float64 core, and the limits.

Oracles: :func:`critbatch.theory.zhang2019.nqm_expected_loss` (the exact expected-loss
recurrence, written independently of the core) for the mean final loss; the float64 core for the
distribution of the steps to target (two-sample tests: an f32 run draws its own noise, so the two
types are independent samples); NumPy's float32 arithmetic for a noiseless run, step by step. The
Rust tests (``real::tests``) pin the float64 records to those of the core before float32 existed
and compare every SIMD level in float32 inside one process; ``tests/test_simd.py`` compares them
across processes in both dtypes.
"""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest
from scipy import stats

import critbatch as cb
from critbatch.spec import loads
from critbatch.theory import zhang2019
from tests.conftest import Err

H = 1.0 / np.arange(1.0, 17.0)


def _nqm() -> cb.problems.Nqm:
    return cb.problems.nqm(H, H, 1.0)


@pytest.mark.parametrize(
    ("optimizer", "momentum"),
    [
        pytest.param(cb.optimizers.sgd(), 0.0, id="sgd"),
        pytest.param(cb.optimizers.heavy_ball(0.8), 0.8, id="heavy ball"),
    ],
)
def test_float32_final_losses_have_the_exact_expected_mean(optimizer, momentum):
    steps, batch, lr, runs = 50, 4, 0.3, 3000
    target = cb.targets.target(max_steps=steps, check_every=steps)
    exact = zhang2019.nqm_expected_loss(H, H, 1.0, lr, batch, steps, momentum=momentum)[-1]
    means, ses = [], []
    for dtype in ("float32", "float64"):
        res = cb.sweep(_nqm(), optimizer, [batch], [lr], runs, target, seed=4, dtype=dtype)
        losses = np.asarray(res["final_loss"])
        means.append(losses.mean())
        ses.append(losses.std(ddof=1) / np.sqrt(runs))
        # 5 standard errors of the Monte Carlo mean
        assert abs(means[-1] - exact) < 5 * ses[-1], dtype
    # and the two types agree with each other (independent noise: a two-sample z of 5)
    assert abs(means[0] - means[1]) < 5 * np.hypot(*ses)


def test_float32_steps_to_target_follow_the_float64_distribution():
    target = cb.targets.target(loss_below=0.08, max_steps=20_000, check_every=1)
    args = (_nqm(), "sgd", [1, 16], [0.4], 500, target)
    single = cb.sweep(*args, dtype="float32", seed=1).to_pandas()
    double = cb.sweep(*args, seed=2).to_pandas()
    assert single["reached"].all()
    assert double["reached"].all()
    for b in (1, 16):
        a = single.loc[single["batch_size"] == b, "steps"]
        c = double.loc[double["batch_size"] == b, "steps"]
        # two-sample tests: a p-value below 1e-3 would mean a real difference
        assert stats.ks_2samp(a, c, method="asymp").pvalue > 1e-3, b
        assert stats.mannwhitneyu(a, c).pvalue > 1e-3, b


def _float32_sgd(h: np.ndarray, x0: np.ndarray, lr: float, steps: int) -> np.ndarray:
    """Noiseless SGD on the NQM in NumPy float32, one rounded operation at a time."""
    h32, x, lr32 = h.astype(np.float32), x0.astype(np.float32), np.float32(lr)
    for _ in range(steps):
        x = x - lr32 * (h32 * x)
    return x


def test_a_noiseless_float32_run_is_float32_arithmetic():
    h, x0 = np.array([0.75, 0.1, 1.0 / 3.0, 0.02]), np.array([1.0, -2.5, 0.3, 7.0])
    target = cb.targets.target(max_steps=30, check_every=30)
    res = cb.sweep(cb.problems.nqm(h, 0.0, x0), "sgd", [2], [0.3], 1, target, dtype="float32")
    want = _float32_sgd(h, x0, 0.3, 30)
    assert res["final_x0"][0] == float(want[0])
    exact = 0.5 * float(np.sum(h.astype(np.float32) * want.astype(np.float64) ** 2))
    assert res["final_loss"][0] == pytest.approx(exact, rel=1e-15)
    double = cb.sweep(cb.problems.nqm(h, 0.0, x0), "sgd", [2], [0.3], 1, target)
    assert double["final_x0"][0] != res["final_x0"][0]


@pytest.mark.parametrize(
    ("k", "tolerance"),
    [
        pytest.param(12, 1e-5, id="lr h = 1.3 * 2^-12: exact to 1e-5"),
        pytest.param(16, 1e-4, id="lr h = 1.3 * 2^-16: exact to 1e-4"),
        pytest.param(20, 0.1, id="lr h = 1.3 * 2^-20: within 10 %"),
    ],
)
def test_the_float32_decay_is_exact_to_the_documented_tolerance(k, tolerance):
    # docs/float32.md: without noise a coordinate decays by (1 - lr h) per step; float32
    # rounds the decrement lr h x to its ulp, which matters once lr h nears 2^-24
    lr_h, steps = 1.3 * 2.0**-k, 10_000
    x0 = np.array([0.77, 1.9, 0.31, 5.3])
    target = cb.targets.target(max_steps=steps, check_every=steps)
    problem = cb.problems.nqm(np.full(4, lr_h), 0.0, x0)
    res = cb.sweep(problem, "sgd", [1], [1.0], 1, target, dtype="float32")
    start = 0.5 * lr_h * float(np.sum(x0**2))
    exact = start * (1.0 - lr_h) ** (2 * steps)
    decrease = (start - res["final_loss"][0]) / (start - exact)
    assert decrease == pytest.approx(1.0, abs=tolerance)


def test_float32_freezes_a_noiseless_coordinate_whose_lr_h_is_below_2_to_the_minus_25():
    # docs/float32.md: the decrement is less than half an ulp of x, so x never moves
    x0 = np.array([0.77, 1.9])
    target = cb.targets.target(max_steps=1000, check_every=1000)
    problem = cb.problems.nqm(np.full(2, 2.0**-26), 0.0, x0)
    single = cb.sweep(problem, "sgd", [1], [1.0], 1, target, dtype="float32")
    double = cb.sweep(problem, "sgd", [1], [1.0], 1, target)
    # x0 rounded to float32 once, then never again moved
    assert single["final_x0"][0] == float(np.float32(0.77))
    assert double["final_x0"][0] < 0.77


def test_the_dtype_goes_from_a_spec_file_to_the_core_and_back():
    text = textwrap.dedent(
        """
        optimizers = ["sgd"]
        batch_sizes = [2]
        learning_rates = [0.3]
        seeds = 3
        dtype = "float32"
        [problem]
        kind = "nqm_power_law"
        dim = 8
        [target]
        loss_below = 0.01
        max_steps = 500
        """
    )
    spec = loads(text)
    assert spec.dtype == "float32"
    again = loads(spec.to_toml())
    assert again.dtype == "float32"
    assert again.hash() == spec.hash()
    plan = again.to_plan()
    assert plan.dtype == "float32"
    single = cb.execute(plan)
    double = cb.execute(loads(text.replace('dtype = "float32"', "")).to_plan())
    # the same runs in another float type: other noise, other numbers, the same columns
    assert list(single.to_pandas().columns) == list(double.to_pandas().columns)
    assert not np.array_equal(single["final_loss"], double["final_loss"])


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(
            lambda: cb.make_plan(
                _nqm(),
                "sgd",
                [1],
                [0.1],
                1,
                cb.targets.target(),
                mode="exact_jumps",
                dtype="float32",
            ),
            Err(
                "dtype='float32': mode='exact_jumps' computes the laws of the checkpoint states "
                "in float64; use dtype='float64' or mode='steps'"
            ),
            id="exact jumps compute in float64",
        ),
        pytest.param(
            lambda: cb.sweep(_nqm(), "sgd", [1], [0.1], 1, cb.targets.target(), dtype="half"),
            Err("dtype must be one of 'float64', 'float32', got 'half'"),
            id="an unknown dtype",
        ),
        pytest.param(
            lambda: cb.sweep(
                _nqm(),
                "sgd",
                [1],
                [0.1],
                1,
                cb.targets.target(),
                dtype="float32",
                precision="bf16",
            ),
            Err("precision: the Rust core computes exactly (float64 or float32), got 'bf16'"),
            id="reduced precision is torch's",
        ),
    ],
)
def test_what_float32_does_not_support_is_refused_by_name(build, expected):
    with expected.raises():
        build()


def test_the_core_refuses_an_unknown_dtype_by_name():
    # a plan whose dtype skipped make_plan's check: the core names the field itself
    plan = cb.make_plan(_nqm(), "sgd", [1], [0.1], 1, cb.targets.target(max_steps=2))
    with pytest.raises(ValueError, match=r"dtype must be one of float64, float32, got \"f16\""):
        cb.execute(dataclasses.replace(plan, dtype="f16"))
