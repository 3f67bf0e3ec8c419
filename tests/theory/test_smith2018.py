"""Smith et al. 2018 (docs/theory/smith2018.md): noise scale, its inverse, growth as decay."""

import numpy as np
import pytest

from critbatch.theory import smith2018 as th


@pytest.mark.parametrize("k", [2.0, 5.0, 64.0], ids=lambda k: f"scale by {k}")
@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["sgd", "momentum 0.9"])
def test_noise_scale_invariant_when_lr_and_batch_scale_together(k, momentum):
    assert th.noise_scale(0.1 * k, 50_000, 128 * k, momentum) == pytest.approx(
        th.noise_scale(0.1, 50_000, 128, momentum)
    )


def test_momentum_multiplies_noise_by_one_over_one_minus_m():
    # a heavy-ball run with rate eps and momentum m moves like SGD with rate eps/(1-m)
    assert th.noise_scale(0.1, 1000, 10, momentum=0.75) == pytest.approx(
        th.noise_scale(0.4, 1000, 10)
    )


def test_exact_noise_scale_vanishes_at_full_batch_and_matches_small_batch_limit():
    assert th.noise_scale(0.1, 1000, 1000, exact=True) == 0.0
    assert th.noise_scale(0.1, 10**9, 10, exact=True) == pytest.approx(
        th.noise_scale(0.1, 10**9, 10), rel=1e-7
    )


def test_inverse_round_trips():
    b = np.array([1.0, 32.0, 4096.0])
    g = th.noise_scale(0.05, 60_000, b, momentum=0.5)
    np.testing.assert_allclose(th.batch_size_for_noise_scale(g, 0.05, 60_000, 0.5), b)


def test_equivalent_batch_schedule_keeps_noise_scale_of_decayed_lr():
    factors = np.array([1.0, 0.2, 0.04, 0.008])
    batches = th.equivalent_batch_schedule(128, factors)
    np.testing.assert_allclose(
        th.noise_scale(0.1, 50_000, batches, 0.9), th.noise_scale(0.1 * factors, 50_000, 128, 0.9)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: th.noise_scale(0.1, 100, 10, momentum=1.0), "momentum", id="momentum 1"
        ),
        pytest.param(lambda: th.noise_scale(-0.1, 100, 10), "lr must be positive", id="neg lr"),
        pytest.param(
            lambda: th.equivalent_batch_schedule(128, [1.0, 2.0]), "lr_factors", id="lr increase"
        ),
    ],
)
def test_invalid_input_names_the_condition(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_exact_noise_scale_is_nan_for_a_batch_above_the_data_set():
    g = th.noise_scale(0.1, 100, [50, 100, 200], exact=True)
    assert g[:2].tolist() == [0.1, 0.0]
    assert np.isnan(g[2])
