"""Tests written to kill the survivors of the sampled mutation test (``make mutants``).

Each names the mutant it kills (``file:line``, what the mutation did); see README, "Mutation
testing", for the score and the mutants judged equivalent.
"""

from __future__ import annotations

import warnings

import pytest

from critbatch import store


def test_set_aside_numbers_collisions_from_one(tmp_path):
    # store.py:215 (`n = 0` -> `n = 1`): the second corrupt copy is `.1`, not `.2`.
    for expected in ("_corrupt-a.parquet", "_corrupt-a.parquet.1", "_corrupt-a.parquet.2"):
        path = tmp_path / "a.parquet"
        path.write_bytes(b"not parquet")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target = store._set_aside(path, "test")
        assert target.name == expected
        assert target.exists()
        assert not path.exists()


def test_network_name_defaults_to_model_and_data():
    # problems.py:776 (`name or ...` -> `name and ...`).
    pytest.importorskip("torch")
    from critbatch.problems import network

    p = network("mlp", "digits", model_kwargs={"hidden": [8]})
    assert p.name == "mlp/digits"
    # problems.py:173 (`field(repr=False)` -> `repr=True`): the arrays stay out of the repr.
    for array in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert f"{array}=" not in repr(p)
    # problems.py:201 (`shape[1:]` -> `shape[0:]`): one input's shape, not the data set's.
    assert p.input_shape == (64,)
    assert network("mlp", "digits", model_kwargs={"hidden": [8]}, name="tiny").name == "tiny"


@pytest.mark.parametrize("reference", ["math", "math:", ":sqrt", "math:sqrt()", 3])
def test_resolve_refuses_what_is_not_an_import_reference(reference):
    # problems.py:603 (the `raise` deleted): a malformed reference is a ValueError up front.
    from critbatch.problems import resolve

    with pytest.raises(ValueError, match="must be a built-in name or an import reference"):
        resolve(reference, "model")


def test_load_spec_names_a_file_that_is_not_utf8(tmp_path):
    # spec.py:428 (the `raise` deleted): a Latin-1 file is a SpecError, not an UnboundLocalError.
    from critbatch.spec import SpecError, load_spec

    f = tmp_path / "s.toml"
    f.write_bytes("optimizers = ['sgd']  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8 text"):
        load_spec(f)


def test_a_search_range_must_not_be_empty():
    # search.py:122 (`not low < high` -> `not low <= high`): low == high is refused.
    from critbatch.search import space

    with pytest.raises(ValueError, match="learning_rate: low must be below high"):
        space("sgd", learning_rate=(0.1, 0.1))
    assert space("sgd", learning_rate=(0.1, 0.2)).dimensions[0].high == 0.2


@pytest.mark.parametrize("n_boot", [-1, 2.5, "200"])
def test_best_trials_validates_n_boot_first(n_boot):
    # search.py:266 (the validation of n_boot deleted).
    from critbatch.search import best_trials, space

    with pytest.raises((TypeError, ValueError), match="n_boot must"):
        best_trials(None, space("sgd", learning_rate=(0.01, 1.0)), n_boot=n_boot)


@pytest.mark.parametrize("law", ["inverse", "mccandlish"])
def test_overhead_critical_batch_counts_linear_scaling_from_the_reference(law):
    # fit/models.py:439 (`(1.0 + overhead) * b0` -> `(0.0 + overhead) * b0`):
    # b_r = (1 + r) b0 + r B_noise, Zhang et al. 2024's critical batch size.
    import math

    from critbatch.fit.models import LAWS

    b = LAWS[law].critical_from_beta(
        math.log(100.0), "overhead", overhead=0.2, reference_batch=256.0
    )
    assert b == pytest.approx(1.2 * 256.0 + 0.2 * 100.0)


@pytest.mark.parametrize("kwargs", [{"not a name": 1}, {1: 2}, {"class ": 0}])
def test_keyword_tables_need_identifier_keys(kwargs):
    # problems.py:628 (the `raise` deleted): a key that is not a keyword name is refused.
    from critbatch.problems import _kwargs

    with pytest.raises(ValueError, match="is not a keyword argument name"):
        _kwargs("model_kwargs", kwargs)


def test_comparison_summary_has_a_row_per_model():
    # fit/comparison.py:223 (the per-model `lines.append` deleted).
    from critbatch.fit import compare
    from tests.test_fit import DESIGNS, synth

    params, sizes = DESIGNS["rational"]
    models = ["mccandlish", "inverse", "rational"]
    result = compare(synth("rational", params, sizes, 4, 0.1, seed=7), models)[()]
    rows = result.summary().splitlines()
    assert len(rows) == 2 + len(models)
    assert [row.split()[0] for row in rows[1:-1]] == models
    assert rows[-1].startswith("best by AIC")


def test_a_spec_the_backend_cannot_run_is_a_spec_error():
    # spec.py:595 (the `raise SpecError(..., "backend", ...)` deleted).
    from critbatch.spec import SpecError, loads

    text = (
        'backend = "rust"\nprecision = "tf32"\noptimizers = ["sgd"]\nbatch_sizes = [1]\n'
        'learning_rates = [0.1]\n[problem]\nkind = "nqm_power_law"\ndim = 3\n'
    )
    with pytest.raises(SpecError, match="backend: precision: the Rust core computes exactly"):
        loads(text)
    assert loads(text.replace('"rust"', '"torch"')).backend == "torch"


@pytest.mark.parametrize("check_every", [1, 4])
def test_censored_likelihood_derivatives_match_finite_differences(check_every):
    # fit/likelihood.py:198 (a `*` of the exact runs' h-gradient -> `/`): the Newton steps'
    # gradient and Hessian are those of the log-likelihood.
    import numpy as np

    from critbatch.fit.likelihood import Observations, _Problem

    b = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    steps = np.array([900.0, 480.0, 260.0, 150.0, 100.0, 80.0])
    censored = np.array([False, False, True, False, False, True])
    obs = Observations.from_runs(b, steps, censored, check_every, np.linspace(0.5, 2.0, 6))
    g = np.array([[0.1, -0.2, 0.05, 0.3, -0.1, 0.2]])
    prob, rows = _Problem(obs, g), np.array([0])

    def at(a, h):
        return prob.evaluate(np.array([a]), np.array([h]), rows)

    a, h, e = 5.5, 1.3, 1e-6
    ll, ga, gh, haa, hah, hhh = (float(x[0]) for x in at(a, h))
    assert ga == pytest.approx((at(a + e, h)[0][0] - at(a - e, h)[0][0]) / (2 * e), rel=1e-5)
    assert gh == pytest.approx((at(a, h + e)[0][0] - at(a, h - e)[0][0]) / (2 * e), rel=1e-5)
    assert haa == pytest.approx((at(a + e, h)[1][0] - at(a - e, h)[1][0]) / (2 * e), rel=1e-5)
    assert hah == pytest.approx((at(a, h + e)[1][0] - at(a, h - e)[1][0]) / (2 * e), rel=1e-5)
    assert hhh == pytest.approx((at(a, h + e)[2][0] - at(a, h - e)[2][0]) / (2 * e), rel=1e-5)
    assert np.isfinite(ll)


def test_a_batch_of_exactly_the_int64_limit_is_a_valid_plan():
    # plan.py:190 (`bound > MAX_INT` -> `>=`): 2^63 - 1 itself is allowed, one more is not.
    import critbatch as cb
    from critbatch import _validate as v
    from critbatch.plan import make_plan

    problem, target = cb.problems.nqm([1.0], [1.0]), cb.targets.target(max_steps=1)
    make_plan(problem, "sgd", [v.MAX_INT], [0.1], 1, target)
    with pytest.raises(ValueError, match="must be at most"):
        make_plan(problem, "sgd", [v.MAX_INT + 1], [0.1], 1, target)


def test_fits_summary_heads_each_group():
    # fit/result.py:367 (the group header `head = ...` deleted).
    import pandas as pd

    from critbatch.fit import fit
    from tests.test_fit import DESIGNS, synth

    params, sizes = DESIGNS["rational"]
    parts = [
        synth("rational", params, sizes, 3, 0.1, seed=s).assign(optimizer=name)
        for s, name in ((1, "sgd"), (2, "adam"))
    ]
    text = fit(pd.concat(parts, ignore_index=True), "rational", by="optimizer").summary()
    assert "== optimizer=sgd\n" in text
    assert "== optimizer=adam\n" in text


def test_normal_mass_far_in_the_right_tail_is_finite():
    # fit/likelihood.py:139 (`right = z_lo > 0` -> `z_lo < 0`): the right tail is computed with
    # survival functions, so a run censored 40 sd above the curve keeps its likelihood.
    import numpy as np
    from scipy import stats

    from critbatch.fit.likelihood import log_normal_mass

    got = log_normal_mass(np.array([40.0, 30.0]), np.array([np.inf, 31.0]))
    want = [stats.norm.logsf(40.0), np.log(stats.norm.sf(30.0) - stats.norm.sf(31.0))]
    assert got == pytest.approx(want, rel=1e-9)


def test_target_divergence_factor_defaults_to_a_million():
    # targets.py:69 (the default 1e6 changed).
    from critbatch.targets import target

    assert target(max_steps=5).divergence_factor == 1e6


def test_reference_trajectory_refuses_a_matrix_start():
    # reference/optimizers.py:174 (the `raise` deleted).
    import numpy as np

    from critbatch import optimizers as opt
    from critbatch.reference.optimizers import optimizer_trajectory

    with pytest.raises(ValueError, match="x0 must be a non-empty 1-D array"):
        optimizer_trajectory(opt.sgd(), np.zeros((2, 2)), np.zeros((1, 2, 2)), [0.1])
