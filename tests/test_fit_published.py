"""Point fits reproduce published fits: steps generated here from the published laws, refitted.

Every number below is a published fitted parameter (or the published batch-size grid it was
fitted on), with its source in a comment. The steps K(b) are computed in the tests from the
stated law; no table of measured steps is copied. Noiseless data put the fit's noise scale at
its floor, and the estimate is the exact least-squares optimum, so the refit must return the
published parameters to a relative 2e-7.

Not covered, because no published number was found: McCandlish-law B_noise / B_crit fits to
the MLPerf ResNet-50 and BERT results.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from critbatch.fit import critical_ratio, fit

REL = 2e-7

# ---- Zhang et al. 2024 -------------------------------------------------------------------------
# Zhang, Morwani, Vyas, Wu, Zou, Ghai, Foster, Kakade 2024, "How does critical batch size scale
# in pre-training?", arXiv:2410.21676; code github.com/hlzhang109/critical-batch-size, file
# plots/chinchilla.ipynb (commit c5b509d), the cell that fits the step counts per model size:
#   - the law: log K = log(a + b / B), fitted with scipy curve_fit on log steps (alpha = 1), i.e.
#     critbatch's inverse law with k_inf = a, alpha = b;
#   - the batch-size grid: B = 2**6 ... 2**14 (the notebook's ``batch_sizes``);
#   - the printed fitted a and b per model size, and the printed critical batch size, taken as
#     printed (all digits). Model "151M" is the notebook's "151M-ablation".
#   - the CBS: the notebook solves b - 5 a B* + 5 a (1.2 * 256) = 0, i.e. 20 % more steps than
#     linear scaling from the reference batch size B_ref = 256:
#     a + b/B* = 1.2 (a + b/B_ref) B_ref / B*  <=>  B* = 1.2 B_ref + 0.2 b / a.
#     critbatch's ``critical="overhead"`` with ``reference_batch=256`` is this definition.
ZHANG_BATCH_SIZES = 2.0 ** np.arange(6, 15)
ZHANG_REFERENCE_BATCH = 256.0
ZHANG_FITS = {  # model size: (a, b, published CBS)
    "85M": (1293.8268694659337, 2834258.0888740215, 745.3201466381583),
    "151M": (1752.4211962796799, 5677478.783007255, 955.1582414387951),
    "302M": (2095.3497601960876, 11383269.891870424, 1393.726947253441),
    "604M": (2459.9274969089824, 19449688.58779496, 1888.5221009346358),
    "1.2B": (3897.306597333535, 43381130.22429582, 2533.4108017868743),
}


def _zhang_table(a: float, b: float) -> pd.DataFrame:
    return pd.DataFrame({"batch_size": ZHANG_BATCH_SIZES, "steps": a + b / ZHANG_BATCH_SIZES})


@pytest.mark.parametrize("model_size", list(ZHANG_FITS))
def test_zhang2024_inverse_law_parameters(model_size):
    a, b, _ = ZHANG_FITS[model_size]
    f = fit(_zhang_table(a, b), "inverse", n_boot=0).item()
    assert f.status == "identified"  # b/a lies inside 64 ... 16384 for every model size
    assert f.params["k_inf"] == pytest.approx(a, rel=REL)
    assert f.params["alpha"] == pytest.approx(b, rel=REL)
    assert f.critical_batch_size == pytest.approx(b / a, rel=REL)
    # The same curve in McCandlish's coordinates: S_min = a, B_noise = b / a.
    g = fit(_zhang_table(a, b), "mccandlish", n_boot=0).item()
    assert g.params["s_min"] == pytest.approx(a, rel=REL)
    assert g.params["b_noise"] == pytest.approx(b / a, rel=REL)


@pytest.mark.parametrize("model_size", list(ZHANG_FITS))
def test_zhang2024_critical_batch_size(model_size):
    a, b, published = ZHANG_FITS[model_size]
    f = fit(
        _zhang_table(a, b),
        "inverse",
        n_boot=0,
        critical="overhead",
        overhead=0.2,
        reference_batch=ZHANG_REFERENCE_BATCH,
    ).item()
    assert f.status == "identified"
    assert f.critical_batch_size == pytest.approx(published, rel=REL)
    # from b -> 0 instead of B_ref, the overhead batch size is 0.2 b / a
    g = fit(_zhang_table(a, b), "inverse", n_boot=0, critical="overhead", overhead=0.2).item()
    assert g.critical_batch_size == pytest.approx(0.2 * b / a, rel=REL)


# ---- Shallue et al. 2019 -----------------------------------------------------------------------
# Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl 2019, "Measuring the effects of data
# parallelism on neural network training", JMLR 20(112), arXiv:1811.03600. Taken: the reported
# shape only (momentum and plain SGD need the same steps in the perfect-scaling regime at small
# batch sizes, and momentum keeps scaling perfectly up to larger batch sizes), and the batch-size
# grid of its ResNet-8 on CIFAR-10 workload, run with both SGD and Nesterov momentum at
# b = 2 ... 8192 (github.com/google-research/google-research, batch_science/README.md, "Summary
# of all available data"). The paper publishes no fitted K(b) law, so the constants below are
# ours: one perfect-scaling constant alpha for both optimizers, and B_noise = 64 (SGD) and 512
# (momentum), both inside the grid.
SHALLUE_BATCH_SIZES = 2.0 ** np.arange(1, 14)
SHALLUE_ALPHA = 2.0**20
SHALLUE_B_NOISE = {"nesterov_momentum": 512.0, "sgd": 64.0}


def test_shallue2019_momentum_has_the_larger_critical_batch_size():
    seeds, sigma = 5, 0.05
    rng = np.random.default_rng(20190712)
    rows = []
    for optimizer, b_noise in SHALLUE_B_NOISE.items():
        b = np.repeat(SHALLUE_BATCH_SIZES, seeds)
        k_inf = SHALLUE_ALPHA / b_noise
        steps = (k_inf + SHALLUE_ALPHA / b) * np.exp(sigma * rng.standard_normal(b.size))
        rows.append(
            pd.DataFrame(
                {
                    "batch_size": b,
                    "steps": steps,
                    "optimizer": optimizer,
                    "seed": np.tile(np.arange(seeds), SHALLUE_BATCH_SIZES.size),
                }
            )
        )
    fits = fit(pd.concat(rows, ignore_index=True), n_boot=0)
    momentum, sgd = fits[("nesterov_momentum",)], fits[("sgd",)]
    assert momentum.status == sgd.status == "identified"
    ratio = critical_ratio(momentum, sgd)
    assert ratio.verdict("larger") == "supports"
    assert ratio.estimate == pytest.approx(512.0 / 64.0, rel=0.1)
