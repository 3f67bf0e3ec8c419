"""Iiduka 2022 (docs/theory/iiduka2022.md): the rational K(b), its critical batch, SGD constants."""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq, minimize_scalar

import critbatch.theory as theory
from critbatch.theory import iiduka2022 as th

CONSTANTS = [
    pytest.param(10.0, 1.0, 1.0, 0.0, id="unit target, no bias"),
    pytest.param(3.0, 0.25, 0.1, 0.0, id="small target"),
    pytest.param(50.0, 4.0, 2.0, 1.5, id="adaptive bias floor C3"),
    pytest.param(1e4, 1e-3, 0.05, 1e-4, id="tiny noise constant"),
]


@pytest.mark.parametrize(("c1", "c2", "eps", "c3"), CONSTANTS)
def test_critical_batch_minimizes_sfo_numerically(c1, c2, eps, c3):
    pole = c2 / (eps**2 - c3)
    res = minimize_scalar(
        lambda b: th.sfo(b, c1, c2, eps, c3),
        bounds=(pole * 1.0001, pole * 50),
        method="bounded",
        options={"xatol": pole * 1e-9},
    )
    b_star = th.critical_batch_size(c2, eps, c3)
    assert b_star == pytest.approx(res.x, rel=1e-5)
    assert th.sfo(b_star, c1, c2, eps, c3) == pytest.approx(res.fun, rel=1e-10)


@pytest.mark.parametrize(("c1", "c2", "eps", "c3"), CONSTANTS)
def test_closed_forms_at_critical_equal_evaluation(c1, c2, eps, c3):
    b_star = th.critical_batch_size(c2, eps, c3)
    assert th.steps_at_critical(c1, eps, c3) == pytest.approx(th.steps(b_star, c1, c2, eps, c3))
    assert th.sfo_at_critical(c1, c2, eps, c3) == pytest.approx(th.sfo(b_star, c1, c2, eps, c3))


@settings(max_examples=60, deadline=None)
@given(
    c1=st.floats(0.1, 1e4),
    c2=st.floats(1e-3, 1e3),
    eps=st.floats(0.05, 3.0),
    bias=st.floats(0.0, 0.9),
    factors=st.lists(st.floats(1.001, 1e4), min_size=2, max_size=8),
)
def test_steps_never_increase_with_batch(c1, c2, eps, bias, factors):
    c3 = bias * eps**2
    pole = c2 / (eps**2 - c3)
    b = np.sort(pole * np.asarray(factors))
    k = th.steps(b, c1, c2, eps, c3)
    assert np.all(np.diff(k) <= 1e-12 * k[:-1])
    assert np.all(k >= c1 / (eps**2 - c3) * (1 - 1e-12))  # the large-batch limit


SGD = [
    pytest.param(1.0, 1.0, 1.0, 0.5, 0.3, id="L=1 eta=0.5"),
    pytest.param(10.0, 4.0, 2.0, 0.15, 0.1, id="L=10 eta close to 2/L"),
    pytest.param(0.5, 0.01, 5.0, 0.1, 0.05, id="low noise"),
]


@pytest.mark.parametrize(("L", "sigma2", "delta", "eta", "eps"), SGD)
@pytest.mark.parametrize("b_over_star", [0.75, 1.0, 3.0, 40.0], ids=lambda r: f"b={r}b*")
def test_sgd_steps_invert_the_bound(L, sigma2, delta, eta, eps, b_over_star):
    b = b_over_star * th.sgd_critical_batch_size(L, sigma2, eta, eps)
    k = th.sgd_steps(b, L, sigma2, delta, eta, eps)
    root = brentq(
        lambda kk: th.sgd_bound(kk, b, L, sigma2, delta, eta) - eps**2,
        1e-9,
        1e12,
        xtol=1e-12,
        rtol=1e-13,
    )
    assert k == pytest.approx(root, rel=1e-9)


@pytest.mark.parametrize(("L", "sigma2", "delta", "eta", "eps"), SGD)
def test_sgd_constants_follow_from_summed_descent_lemma(L, sigma2, delta, eta, eps):
    # Independent: sum the descent lemma over K steps with a constant gradient-norm floor g2 and
    # solve for the largest g2 it allows; that is the bound C1/K + C2/b.
    k, b = 37.0, 5.0
    per_step_decrease = eta * (1 - L * eta / 2)
    g2 = (delta + k * L * eta**2 * sigma2 / (2 * b)) / (k * per_step_decrease)
    assert th.sgd_bound(k, b, L, sigma2, delta, eta) == pytest.approx(g2, rel=1e-12)


def test_steps_vectorized_matches_scalar():
    b = np.array([2.5, 3.0, 10.0])
    k = th.steps(b, 10.0, 1.0, 1.0)
    assert isinstance(k, np.ndarray)
    np.testing.assert_allclose(k, [th.steps(float(x), 10.0, 1.0, 1.0) for x in b])


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        pytest.param(lambda: th.steps(1.0, 1.0, 1.0, 1.0), math.inf, id="b at the pole"),
        pytest.param(lambda: th.steps(0.5, 1.0, 1.0, 1.0), math.inf, id="b below the pole"),
        pytest.param(
            lambda: th.steps(2.0, 1.0, 1.0, 1.0, C3=1.0), math.inf, id="eps^2 equal to C3"
        ),
        pytest.param(
            lambda: th.critical_batch_size(1.0, 1.0, C3=2.0),
            math.inf,
            id="target below the bias floor: no critical batch",
        ),
        pytest.param(
            lambda: th.sgd_constants(1.0, 1.0, 1.0, 2.0),
            (math.inf, math.inf),
            id="eta at 2/L: vacuous constants",
        ),
        pytest.param(
            lambda: th.sgd_steps(8.0, 1.0, 1.0, 1.0, 2.5, 1.0), math.inf, id="eta above 2/L: never"
        ),
        pytest.param(
            lambda: th.sgd_critical_batch_size(1.0, 1.0, 2.0, 1.0),
            math.inf,
            id="eta at 2/L: b* unbounded",
        ),
        pytest.param(
            lambda: th.sgd_bound(0.0, 1.0, 1.0, 1.0, 1.0, 0.5),
            math.inf,
            id="zero steps: min over no iterates",
        ),
        pytest.param(lambda: th.critical_batch_size(0.0, 1.0), 0.0, id="no noise: b* = 0"),
    ],
)
def test_undefined_values_are_inf_not_errors(call, expected):
    assert call() == expected


def test_an_array_through_the_pole_is_inf_below_it_only():
    k = th.steps([1, 2, 4, 8], C1=10.0, C2=2.0, eps=1.0)
    assert k[:2].tolist() == [math.inf, math.inf]
    np.testing.assert_allclose(k[2:], [20.0, 80.0 / 6.0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: th.steps(-2.0, 1.0, 1.0, 1.0), "batch_size must be positive", id="negative b"
        ),
        pytest.param(
            lambda: th.steps([2.0, 0.0], 1.0, 1.0, 1.0),
            "batch_size must be positive",
            id="a zero b inside an array",
        ),
        pytest.param(lambda: th.steps(2.0, 0.0, 1.0, 1.0), "C1", id="zero C1"),
        pytest.param(
            lambda: th.steps(2.0, 1.0, -1.0, 1.0), "C2 must be non-negative", id="negative C2"
        ),
        pytest.param(
            lambda: th.sgd_critical_batch_size(1.0, 1.0, 0.5, -1.0), "eps", id="negative eps"
        ),
        pytest.param(
            lambda: th.sgd_bound(-1.0, 1.0, 1.0, 1.0, 1.0, 0.5),
            "K must be non-negative",
            id="negative steps",
        ),
        pytest.param(
            lambda: th.critical_batch_size(np.nan, 1.0), "C2 must not be NaN", id="NaN C2"
        ),
    ],
)
def test_invalid_input_names_the_condition(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_non_numeric_batch_is_a_type_error():
    with pytest.raises(TypeError, match="batch_size must be"):
        th.steps("8", 1.0, 1.0, 1.0)


# The layer check for the whole theory package lives here, with the first paper's tests.


def test_theory_package_imports_neither_core_nor_torch():
    code = (
        "import sys, critbatch.theory\n"
        "bad = [m for m in ('critbatch._core', 'torch', 'jax') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_theory_name_is_documented():
    for name in theory.__all__:
        module = getattr(theory, name)
        assert module.__all__, name
        for public in module.__all__:
            assert getattr(module, public).__doc__, f"{name}.{public} lacks a docstring"


def test_every_public_theory_function_follows_the_docstring_template():
    # one line, a math block, Args, Returns, an Example (run as a doctest), References citing
    # the module's page in docs/theory
    for name in theory.__all__:
        module = getattr(theory, name)
        for public in module.__all__:
            obj = getattr(module, public)
            if not callable(obj) or isinstance(obj, type):
                continue
            doc = obj.__doc__
            summary = doc.strip().splitlines()[0]
            assert summary.endswith("."), f"{name}.{public}"
            assert len(summary) <= 96, f"{name}.{public}"
            for part in (".. math::", "Args:", "Returns:", "Example", "References:"):
                assert part in doc, f"{name}.{public} lacks {part}"
            references = doc.split("References:")[1]
            assert "arXiv" in references or f"docs/theory/{name}.md" in references, public
