"""Zhang et al. 2024 (docs/theory/zhang2024.md): critical batch size as overhead over linear."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from critbatch.theory import perrone2019, zhang2024

LAWS = [
    pytest.param(1.0, 100.0, 1000.0, 0.2, id="b0=1 20%"),
    pytest.param(8.0, 2000.0, 5e5, 0.2, id="b0=8 large noise"),
    pytest.param(2.0, 50.0, 10.0, 0.5, id="small noise 50%"),
]


@pytest.mark.parametrize(("b0", "k_inf", "alpha", "o"), LAWS)
def test_closed_form_matches_root_finding(b0, k_inf, alpha, o):
    def excess(b):
        k = perrone2019.inverse_law_steps(b, k_inf, alpha)
        perfect = perrone2019.inverse_law_steps(b0, k_inf, alpha) * b0 / b
        return k / perfect - (1 + o)

    root = brentq(excess, b0 * (1 + 1e-9), b0 * 1e9, xtol=1e-12, rtol=1e-14)
    assert zhang2024.critical_batch_size(b0, k_inf, alpha, o) == pytest.approx(root, rel=1e-9)


@pytest.mark.parametrize(("b0", "k_inf", "alpha", "o"), LAWS)
def test_curve_interpolation_converges_to_closed_form(b0, k_inf, alpha, o):
    b = b0 * np.geomspace(1, 1e6, 20_001)
    k = perrone2019.inverse_law_steps(b, k_inf, alpha)
    assert zhang2024.critical_batch_size_from_curve(b, k, o) == pytest.approx(
        zhang2024.critical_batch_size(b0, k_inf, alpha, o), rel=1e-5
    )


def test_curve_with_perfect_scaling_never_crosses():
    b = np.array([1.0, 2.0, 4.0, 8.0])
    assert zhang2024.critical_batch_size_from_curve(b, 800 / b) == math.inf


def test_unreached_runs_count_as_above():
    b = np.array([1.0, 2.0, 4.0, 8.0])
    assert zhang2024.critical_batch_size_from_curve(b, [100, 50, 25, math.inf]) == 8.0


def test_log_inverse_law_is_log_of_inverse_law():
    b = np.array([1.0, 10.0, 1e4])
    np.testing.assert_allclose(
        zhang2024.log_inverse_law(b, 100.0, 1000.0),
        np.log(perrone2019.inverse_law_steps(b, 100.0, 1000.0)),
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: zhang2024.critical_batch_size(1.0, 1.0, 1.0, overhead=0.0),
            "overhead",
            id="no overhead",
        ),
        pytest.param(
            lambda: zhang2024.critical_batch_size_from_curve([1, 1], [2, 1]),
            "distinct",
            id="repeated b",
        ),
    ],
)
def test_invalid_input_names_the_condition(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_degenerate_laws_and_unreached_references():
    assert zhang2024.critical_batch_size(1.0, 0.0, 1.0) == math.inf  # perfect scaling forever
    assert math.isnan(zhang2024.critical_batch_size_from_curve([1, 2], [math.inf, 1]))
    curves = np.array([[100.0, 50.0, 35.0, 25.0], [math.inf, 50.0, 35.0, 25.0]])
    out = zhang2024.critical_batch_size_from_curve([1, 2, 4, 8], curves)
    assert out[0] == pytest.approx(2.8284, abs=1e-4)
    assert math.isnan(out[1])
