"""Dai & Zhu 2018 (docs/theory/dai_zhu2018.md): escape times on the warped double well."""

import math

import numpy as np
import pytest
from scipy.integrate import dblquad, quad

from critbatch import problems
from critbatch.theory import dai_zhu2018 as th

KAPPA, OFFSET, STIFF = 0.3, 1.0, 8.0
FLAT, SHARP = th.warped_minima(KAPPA)
C_FLAT, C_SHARP = th.warped_minimum_curvatures(KAPPA)


def f(x):
    return th.double_well_potential(x, KAPPA, OFFSET, STIFF)


def _escape(from_sharp, D):
    if from_sharp:  # over the barrier at 0 to the flat minimum; the far side is steep
        return th.mean_first_passage_time(f, SHARP, FLAT, D, far=SHARP + 1.5)
    return th.mean_first_passage_time(f, FLAT, SHARP, D, far=th.wall_position(KAPPA, OFFSET) - 2)


@pytest.mark.parametrize("barrier_over_d", [16, 20, 25], ids=lambda r: f"dV/D={r}")
@pytest.mark.parametrize("from_sharp", [True, False], ids=["from sharp", "from flat"])
def test_integral_approaches_kramers_at_high_barrier(barrier_over_d, from_sharp):
    D = 1.0 / barrier_over_d
    curvature = C_SHARP if from_sharp else C_FLAT
    kramers = th.kramers_time(1.0, curvature, th.warped_potential_hess(0.0, KAPPA), D)
    assert _escape(from_sharp, D) == pytest.approx(kramers, rel=0.05)


def test_kramers_underestimates_at_moderate_barrier():
    D = 1.0 / 3.0
    kramers = th.kramers_time(1.0, C_SHARP, -4.0, D)
    assert 1.15 < _escape(True, D) / kramers < 1.6


@pytest.mark.parametrize("D", [0.25, 0.5, 1.0], ids=lambda d: f"D={d}")
def test_grid_integral_matches_scipy_dblquad(D):
    far, start, target = SHARP + 1.5, SHARP, -0.3
    # mirrored coordinate s = -x: inner from -far to z, outer from -start to -target
    value, _ = dblquad(
        lambda u, z: math.exp((f(-z) - f(-u)) / D),
        -start,
        -target,
        lambda z: -far,
        lambda z: z,
        epsabs=1e-10,
        epsrel=1e-9,
    )
    assert th.mean_first_passage_time(f, start, target, D, far) == pytest.approx(
        value / D, rel=1e-6
    )


def test_integral_matches_monte_carlo_of_the_sde():
    # Euler-Maruyama of dX = -f'(X) dt + sqrt(2D) dW, 3000 paths, fixed seed; tolerance:
    # 4 standard errors of the Monte Carlo mean plus 3% for discretization (dt = 2e-3)
    D, dt, n, target = 0.5, 2e-3, 3000, -0.3
    rng = np.random.default_rng(0)
    x = np.full(n, SHARP)
    hit = np.zeros(n)
    alive = np.arange(n)
    k = 0
    while alive.size:
        k += 1
        xa = x[alive] - dt * th.double_well_grad(x[alive], KAPPA, OFFSET, STIFF)
        xa += math.sqrt(2 * D * dt) * rng.standard_normal(alive.size)
        x[alive] = xa
        done = xa < target
        hit[alive[done]] = k * dt
        alive = alive[~done]
    exact = th.mean_first_passage_time(f, SHARP, target, D, far=SHARP + 1.5)
    stderr = hit.std(ddof=1) / math.sqrt(n)
    assert abs(hit.mean() - exact) < 4 * stderr + 0.03 * exact


def test_escape_time_depends_on_lr_over_batch_only():
    d1 = th.diffusion(0.1, 2.0, 8)
    d2 = th.diffusion(0.4, 2.0, 32)
    assert d1 == pytest.approx(d2)
    assert _escape(True, d1) == pytest.approx(_escape(True, d2))
    # larger lr/b means more diffusion and faster escape
    assert _escape(True, th.diffusion(0.2, 2.0, 8)) < _escape(True, d1)


def test_log_escape_time_slope_is_barrier_height():
    inv_d = np.array([14.0, 16.0, 18.0])
    log_t = np.log([_escape(True, 1 / r) for r in inv_d])
    slope = np.polyfit(inv_d, log_t, 1)[0]
    assert slope == pytest.approx(1.0, rel=0.01)


def test_sharp_minimum_is_escaped_faster_than_flat():
    for D in [0.1, 0.25, 0.5]:
        assert _escape(True, D) < _escape(False, D)


@pytest.mark.parametrize("D", [0.005, 0.01], ids=lambda d: f"D={d}")
def test_stationary_mass_ratio_matches_basin_integrals(D):
    x_w = th.wall_position(KAPPA, OFFSET)
    weight = lambda x: math.exp(-f(x) / D)  # noqa: E731
    flat_mass, _ = quad(weight, x_w - 5, 0.0, points=[FLAT], epsabs=0, epsrel=1e-10, limit=200)
    sharp_mass, _ = quad(
        weight, 0.0, SHARP + 1.5, points=[SHARP], epsabs=0, epsrel=1e-10, limit=200
    )
    # Laplace's approximation has relative error O(D); 3% at these noise levels
    assert flat_mass / sharp_mass == pytest.approx(
        th.stationary_mass_ratio(C_FLAT, C_SHARP), rel=0.03
    )
    assert th.stationary_mass_ratio(C_FLAT, C_SHARP) == pytest.approx((1 + KAPPA) / (1 - KAPPA))


def test_eyring_kramers_in_2d_with_a_flat_transverse_direction():
    hm, hs = np.diag([C_SHARP, 3.0]), np.diag([-4.0, 1.0])
    # transverse factor sqrt(|det H_s| / det H_m) adds sqrt(1/3) relative to 1-D
    assert th.eyring_kramers_time(1.0, hm, hs, 0.1) == pytest.approx(
        th.kramers_time(1.0, C_SHARP, -4.0, 0.1) * math.sqrt(1.0 / 3.0)
    )


@pytest.mark.parametrize("kappa", [0.0, 0.3, 0.8], ids=lambda k: f"kappa={k}")
def test_potential_landmarks_and_derivatives(kappa):
    flat, sharp = th.warped_minima(kappa)
    spec = problems.double_well(kappa=kappa)
    assert (flat, sharp) == pytest.approx((spec.flat_minimum, spec.sharp_minimum))
    assert th.warped_potential([flat, 0.0, sharp], kappa) == pytest.approx(
        [0.0, 1.0, 0.0], abs=1e-12
    )
    assert th.warped_potential_hess([flat, sharp], kappa) == pytest.approx(
        th.warped_minimum_curvatures(kappa)
    )
    x = np.linspace(flat - 1.6, sharp + 0.4, 41) + 0.0123  # off the wall kink
    step = 1e-5
    for fn, dfn in [
        (th.double_well_potential, th.double_well_grad),
        (th.double_well_grad, th.double_well_hess),
    ]:
        numeric = (fn(x + step, kappa, OFFSET, STIFF) - fn(x - step, kappa, OFFSET, STIFF)) / (
            2 * step
        )
        np.testing.assert_allclose(dfn(x, kappa, OFFSET, STIFF), numeric, rtol=1e-6, atol=1e-5)


def test_wall_matches_problem_definition():
    spec = problems.double_well(kappa=KAPPA, wall_offset=0.7, wall_stiffness=5.0)
    x_w = spec.flat_minimum - spec.wall_offset
    assert th.wall_position(KAPPA, 0.7) == pytest.approx(x_w)
    assert th.double_well_potential(x_w - 0.5, KAPPA, 0.7, 5.0) == pytest.approx(
        th.warped_potential(x_w - 0.5, KAPPA) + 0.5 * 5.0 * 0.25
    )
    assert th.double_well_potential(x_w + 1e-9, KAPPA, 0.7, 5.0) == pytest.approx(
        th.warped_potential(x_w + 1e-9, KAPPA)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: th.mean_first_passage_time(f, 0.0, 1.0, 0.1, far=2.0),
            "strictly between",
            id="far on the wrong side",
        ),
        pytest.param(
            lambda: th.kramers_time(1.0, 8.0, 4.0, 0.1),
            "curvature_saddle",
            id="saddle not a maximum",
        ),
        pytest.param(
            lambda: th.eyring_kramers_time(1.0, np.eye(2), -np.eye(2), 0.1),
            "exactly one negative",
            id="maximum, not saddle",
        ),
        pytest.param(lambda: th.warped_potential(0.0, 1.0), "kappa", id="kappa=1"),
        pytest.param(lambda: th.diffusion(0.1, 1.0, 0), "batch_size", id="zero batch"),
    ],
)
def test_invalid_input_names_the_condition(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_kramers_underestimate_on_the_test_potential_is_as_documented():
    # the numbers the kramers_time docstring quotes: the example's potential (kappa = 0.5, wall
    # offset 1, stiffness 8), escape from either minimum to the other, dV/D from 2 to 4
    kappa = 0.5
    flat, sharp = th.warped_minima(kappa)
    c_flat, c_sharp = th.warped_minimum_curvatures(kappa)
    saddle = th.warped_potential_hess(0.0, kappa)

    def g(x):
        return th.double_well_potential(x, kappa, 1.0, 8.0)

    excess = []
    for r in np.linspace(2.0, 4.0, 9):
        from_sharp = th.mean_first_passage_time(g, sharp, flat, 1 / r, far=sharp + 1.5)
        from_flat = th.mean_first_passage_time(
            g, flat, sharp, 1 / r, far=th.wall_position(kappa, 1.0) - 2
        )
        excess += [
            from_sharp / th.kramers_time(1.0, c_sharp, saddle, 1 / r) - 1,
            from_flat / th.kramers_time(1.0, c_flat, saddle, 1 / r) - 1,
        ]
    assert min(excess) == pytest.approx(0.13, abs=0.005)
    assert max(excess) == pytest.approx(0.51, abs=0.005)


def test_a_barrier_too_high_for_a_float_gives_inf_not_an_error():
    assert th.mean_first_passage_time(f, SHARP, FLAT, 1e-3, far=SHARP + 1) == math.inf
    assert th.kramers_time(1.0, 8.0, -4.0, 1e-3) == math.inf
    # log-space evaluation: a high but representable barrier is still computed
    high = th.mean_first_passage_time(f, SHARP, FLAT, 1 / 300, far=SHARP + 1.5)
    assert (
        1.0
        < high / th.kramers_time(1.0, C_SHARP, th.warped_potential_hess(0.0, KAPPA), 1 / 300)
        < 1.01
    )
