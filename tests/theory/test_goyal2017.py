"""Goyal et al. 2017 (docs/theory/goyal2017.md): linear scaling rule and gradual warm-up."""

import numpy as np
import pytest

from critbatch.theory import goyal2017 as th


@pytest.mark.parametrize(
    ("lr_base", "b", "b_base", "expected"),
    [
        pytest.param(0.1, 256, 256, 0.1, id="same batch"),
        pytest.param(0.1, 8192, 256, 3.2, id="ImageNet 8k from 256"),
        pytest.param(0.4, 32, 128, 0.1, id="smaller batch"),
    ],
)
def test_linear_scaling_table(lr_base, b, b_base, expected):
    assert th.linear_scaling_lr(lr_base, b, b_base) == pytest.approx(expected)


def test_linear_scaling_keeps_lr_per_example_constant():
    b = np.array([1.0, 3.0, 1000.0])
    np.testing.assert_allclose(th.linear_scaling_lr(0.2, b, 10) / b, 0.02)


def test_warmup_is_linear_then_flat():
    t = np.arange(0, 30)
    lr = th.gradual_warmup(t, 0.1, 3.2, 20)
    np.testing.assert_allclose(np.diff(lr[:21]), (3.2 - 0.1) / 20)
    np.testing.assert_allclose(lr[20:], 3.2)
    assert lr[0] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: th.linear_scaling_lr(0.1, 0, 256),
            "batch_size must be positive",
            id="zero batch",
        ),
        pytest.param(
            lambda: th.gradual_warmup(-1, 0.1, 1.0, 5),
            "step must be non-negative",
            id="negative step",
        ),
        pytest.param(lambda: th.gradual_warmup(1, 0.1, 1.0, 0), "warmup_steps", id="no warm-up"),
    ],
)
def test_invalid_input_names_the_condition(call, message):
    with pytest.raises(ValueError, match=message):
        call()
