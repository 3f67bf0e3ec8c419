"""Every public theory function broadcasts: on arrays it gives what it gives element by element.

One row per public function of ``critbatch.theory.*`` (a test fails when a function has no row).
A row names the arguments given as arrays; the oracle is the same function called once per
element with scalars, the results compared entry by entry (``inf`` and ``nan`` included, so an
undefined element does not spoil the others). Sequence arguments (spectra, schedules, curves,
Hessians) are core dimensions: a row gives them a leading batch axis where the function allows
it, and otherwise passes them whole. A second test checks that all-scalar calls return Python
numbers (or tuples and dataclasses of them), not 0-d arrays.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, NamedTuple

import numpy as np
import pytest

import critbatch.theory as theory
from critbatch.theory import (
    dai_zhu2018,
    goyal2017,
    iiduka2022,
    mccandlish2018,
    perko2023,
    perrone2019,
    smith2018,
    umeda_iiduka2025,
    zhang2019,
    zhang2024,
)


class Row(NamedTuple):
    """``func(**fixed, **arrays)``; ``core`` gives the core rank of an array argument.

    ``sequences`` names the scalars in ``fixed`` that stand for a core sequence (a per-step
    learning rate, unit weights, a 1-D Hessian), which an array would not broadcast.
    """

    func: Any
    arrays: dict[str, Any]
    fixed: dict[str, Any]
    core: dict[str, int] = {}  # noqa: RUF012 - a NamedTuple default, never mutated
    sequences: tuple[str, ...] = ()


def col(*values: float) -> np.ndarray:
    """A column vector, so that it broadcasts against a row into a 2-D grid."""
    return np.asarray(values, dtype=float)[:, None]


def row(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=float)


H3, C3, X3 = [2.0, 0.5, 0.05], [1.0, 3.0, 0.2], [1.0, -2.0, 3.0]
G2, SIGMA2 = np.array([[1.0, 1.0], [0.0, 0.0], [2.0, -1.0]]), np.diag([2.0, 4.0])
T_GRID = np.linspace(0.0, 2.0, 9)
G_GRID = np.asarray(perko2023.linear_regression_g(T_GRID, 2.0, [1.0, 0.3], [1.0, 2.0], 0.5))
KAPPA = 0.3
SHARP = float(dai_zhu2018.warped_minima(KAPPA)[1])


def potential(x: np.ndarray) -> np.ndarray:
    return np.asarray(dai_zhu2018.double_well_potential(x, KAPPA, 1.0, 8.0))


ROWS = {
    # iiduka2022: the batch size sweeps through the pole, so some entries are inf
    "iiduka2022.steps": Row(
        iiduka2022.steps,
        {"batch_size": row(0.5, 1.0, 2.0, 8.0), "C3": col(0.0, 0.5, 1.0)},
        {"C1": 10.0, "C2": 1.0, "eps": 1.0},
    ),
    "iiduka2022.sfo": Row(
        iiduka2022.sfo,
        {"batch_size": row(1.0, 3.0, 9.0), "eps": col(0.5, 1.0)},
        {"C1": 10.0, "C2": 1.0},
    ),
    "iiduka2022.critical_batch_size": Row(
        iiduka2022.critical_batch_size,
        {"C2": row(0.0, 1.0, 4.0), "C3": col(0.0, 1.0, 2.0)},
        {"eps": 1.0},
    ),
    "iiduka2022.steps_at_critical": Row(
        iiduka2022.steps_at_critical, {"C1": row(1.0, 10.0), "C3": col(0.0, 0.9, 1.0)}, {"eps": 1.0}
    ),
    "iiduka2022.sfo_at_critical": Row(
        iiduka2022.sfo_at_critical,
        {"C2": row(0.0, 1.0), "eps": col(0.5, 1.0, 2.0)},
        {"C1": 10.0, "C3": 0.5},
    ),
    "iiduka2022.sgd_constants": Row(
        iiduka2022.sgd_constants,
        {"eta": row(0.1, 1.0, 2.0, 3.0)},
        {"L": 1.0, "sigma2": 1.0, "Delta": 1.0},
    ),
    "iiduka2022.sgd_bound": Row(
        iiduka2022.sgd_bound,
        {"K": row(0.0, 1.0, 10.0), "batch_size": col(1.0, 4.0)},
        {"L": 1.0, "sigma2": 1.0, "Delta": 1.0, "eta": 0.5},
    ),
    "iiduka2022.sgd_steps": Row(
        iiduka2022.sgd_steps,
        {"batch_size": row(0.5, 2.0, 16.0), "eta": col(0.5, 1.0, 2.5)},
        {"L": 1.0, "sigma2": 1.0, "Delta": 1.0, "eps": 1.0},
    ),
    "iiduka2022.sgd_critical_batch_size": Row(
        iiduka2022.sgd_critical_batch_size,
        {"eta": row(0.5, 1.9, 2.0), "sigma2": col(0.0, 1.0)},
        {"L": 1.0, "eps": 1.0},
    ),
    # umeda_iiduka2025: schedules keep their stages last
    "umeda_iiduka2025.batch_schedule": Row(
        umeda_iiduka2025.batch_schedule,
        {"batch_size0": row(1, 3, 8), "delta": col(1.0, 1.5)},
        {"n_stages": 5, "batch_size_max": 40},
    ),
    "umeda_iiduka2025.linear_batch_schedule": Row(
        umeda_iiduka2025.linear_batch_schedule,
        {"increment": row(0.0, 2.5, 8.0), "batch_size_max": col(10, 100)},
        {"batch_size0": 4, "n_stages": 6},
    ),
    "umeda_iiduka2025.lr_schedule": Row(
        umeda_iiduka2025.lr_schedule,
        {"gamma": row(0.9, 1.4), "eta_max": col(0.3, 1.0)},
        {"eta0": 0.1, "n_stages": 5},
    ),
    "umeda_iiduka2025.adaptive_thresholds": Row(
        umeda_iiduka2025.adaptive_thresholds,
        {"eps0": row(0.5, 1.0), "delta": col(1.5, 2.0)},
        {"batch_size0": 3, "batch_size_max": 100, "n_increases": 4},
    ),
    "umeda_iiduka2025.bound": Row(
        umeda_iiduka2025.bound,
        {"L": row(0.5, 1.0, 4.0), "Delta": col(1.0, 10.0)},
        {"batch_sizes": [1, 2, 4], "lrs": [0.5, 0.5, 0.6], "sigma2": 1.0},
    ),
    "umeda_iiduka2025.bound_path": Row(
        umeda_iiduka2025.bound_path,
        {"L": row(0.5, 1.0, 4.0), "eta_max": col(0.6, 1.0)},
        {"batch_sizes": [1, 2, 4], "lrs": [0.5, 0.5, 0.6], "sigma2": 1.0, "Delta": 1.0},
    ),
    "umeda_iiduka2025.schedule_cost": Row(
        umeda_iiduka2025.schedule_cost,
        {"eps": row(0.3, 1.0), "stage_steps": col(1, 10)},
        {"batch_sizes": [2, 4, 8], "lrs": [0.5, 0.5, 0.5], "L": 1.0, "sigma2": 1.0, "Delta": 1.0},
    ),
    "umeda_iiduka2025.optimize_growth_schedule": Row(
        umeda_iiduka2025.optimize_growth_schedule,
        {"eps": row(0.5, 1.0), "sigma2": col(0.5, 2.0)},
        {
            "batch_size0": 1,
            "eta0": 0.5,
            "batch_size_max": 64,
            "eta_max": 0.5,
            "L": 1.0,
            "Delta": 1.0,
            "deltas": [1.0, 2.0],
            "gammas": [1.0],
            "stage_steps": [5, 20],
            "n_stages": 6,
        },
    ),
    # perrone2019
    "perrone2019.inverse_law_steps": Row(
        perrone2019.inverse_law_steps,
        {"batch_size": row(1.0, 10.0, 100.0), "alpha": col(0.0, 1000.0)},
        {"K_inf": 100.0},
    ),
    "perrone2019.training_time": Row(
        perrone2019.training_time,
        {"batch_size": row(1.0, 10.0), "t1": col(0.0, 0.1)},
        {"K_inf": 100.0, "alpha": 1000.0, "t0": 1.0},
    ),
    "perrone2019.optimal_batch_size": Row(
        perrone2019.optimal_batch_size,
        {"K_inf": row(0.0, 100.0), "alpha": col(0.0, 1000.0)},
        {"t0": 1.0, "t1": 0.1},
    ),
    "perrone2019.optimal_time": Row(
        perrone2019.optimal_time,
        {"t0": row(0.0, 1.0), "t1": col(0.1, 2.0)},
        {"K_inf": 100.0, "alpha": 1000.0},
    ),
    "perrone2019.ring_allreduce_time": Row(
        perrone2019.ring_allreduce_time,
        {"P": row(1, 2, 8), "latency": col(0.0, 0.01)},
        {"transfer_time": 0.2},
    ),
    "perrone2019.multi_learner_time": Row(
        perrone2019.multi_learner_time,
        {"batch_size": row(10.0, 20.0), "P": col(1, 4)},
        {"K_inf": 100.0, "alpha": 1000.0, "t0": 1.0, "t1": 0.1, "comm": 0.5},
    ),
    "perrone2019.multi_learner_optimal_batch_size": Row(
        perrone2019.multi_learner_optimal_batch_size,
        {"P": row(1, 2, 8), "comm": col(0.0, 1.0)},
        {"K_inf": 100.0, "alpha": 1000.0, "t0": 0.0, "t1": 0.1},
    ),
    "perrone2019.optimal_batch_size_measured": Row(
        perrone2019.optimal_batch_size_measured,
        {"K_inf": row(0.0, 100.0), "alpha": col(10.0, 1000.0)},
        {"batch_sizes": [1, 10, 100], "update_times": [1.1, 2.0, 11.0]},
    ),
    "perrone2019.strongly_convex_bound": Row(
        perrone2019.strongly_convex_bound,
        {"K": row(0, 1, 10), "eta": col(0.5, 1.0, 1.5)},
        {"batch_size": 2.0, "L": 1.0, "mu": 0.5, "sigma2": 1.0, "Delta": 1.0},
    ),
    "perrone2019.strongly_convex_steps_bound": Row(
        perrone2019.strongly_convex_steps_bound,
        {"batch_size": row(1.0, 16.0), "Delta": col(0.01, 1.0)},
        {"L": 1.0, "mu": 0.5, "sigma2": 1.0, "eps": 0.1},
    ),
    # mccandlish2018: gradients and covariances broadcast over their leading axes
    "mccandlish2018.b_simple": Row(mccandlish2018.b_simple, {"G": G2}, {"Sigma": SIGMA2}, {"G": 1}),
    "mccandlish2018.b_noise": Row(
        mccandlish2018.b_noise,
        {"G": G2, "H": np.stack([np.eye(2), np.diag([1.0, 3.0]), np.diag([0.0, 1.0])])},
        {"Sigma": SIGMA2},
        {"G": 1, "H": 2},
    ),
    "mccandlish2018.optimal_learning_rate": Row(
        mccandlish2018.optimal_learning_rate,
        {"batch_size": row(1.0, 10.0), "B_noise": col(0.0, 10.0)},
        {"lr_max": 1.0},
    ),
    "mccandlish2018.steps": Row(
        mccandlish2018.steps,
        {"batch_size": row(1.0, 30.0), "S_min": col(10.0, 100.0)},
        {"B_noise": 30.0},
    ),
    "mccandlish2018.examples": Row(
        mccandlish2018.examples,
        {"batch_size": row(1.0, 30.0), "B_noise": col(0.0, 30.0)},
        {"E_min": 3000.0},
    ),
    "mccandlish2018.examples_from_steps": Row(
        mccandlish2018.examples_from_steps,
        {"S": row(50.0, 100.0, 200.0), "E_min": col(1.0, 1000.0)},
        {"S_min": 100.0},
    ),
    "mccandlish2018.critical_batch_size": Row(
        mccandlish2018.critical_batch_size,
        {"S_min": row(10.0, 100.0), "E_min": col(30.0, 3000.0)},
        {},
    ),
    "mccandlish2018.gradient_norm_sq_estimate": Row(
        mccandlish2018.gradient_norm_sq_estimate,
        {"g_small_sq": row(5.0, 6.0), "batch_size_big": col(1, 4, 16)},
        {"g_big_sq": 2.0, "batch_size_small": 1},
    ),
    "mccandlish2018.trace_sigma_estimate": Row(
        mccandlish2018.trace_sigma_estimate,
        {"g_big_sq": row(1.0, 2.0), "batch_size_big": col(1, 4, 16)},
        {"g_small_sq": 5.0, "batch_size_small": 1},
    ),
    "mccandlish2018.running_b_simple": Row(
        mccandlish2018.running_b_simple,
        {"decay": row(0.0, 0.5, 0.9), "batch_size_big": col(4, 16)},
        {"g_small_sq": [5.0, 6.0, 4.5], "g_big_sq": [2.0, 1.5, 2.5], "batch_size_small": 1},
    ),
    # zhang2019
    "zhang2019.nqm_moments": Row(
        zhang2019.nqm_moments,
        {"momentum": row(0.0, 0.5), "averaging": col(0.0, 0.8)},
        {"h": H3, "c": C3, "x0": X3, "lr": 0.2, "batch_size": 4.0, "n_steps": 7},
        sequences=("lr", "batch_size"),
    ),
    "zhang2019.nqm_expected_loss": Row(
        zhang2019.nqm_expected_loss,
        {"momentum": row(0.0, 0.9), "precondition_power": col(0.0, 0.5)},
        {"h": H3, "c": C3, "x0": X3, "lr": 0.2, "batch_size": 4.0, "n_steps": 9},
        sequences=("lr", "batch_size"),
    ),
    "zhang2019.nqm_expected_loss_at": Row(
        zhang2019.nqm_expected_loss_at,
        {"t": row(0, 1, 50), "batch_size": col(1.0, 16.0), "momentum": col(0.0, 0.9)},
        {"h": H3, "c": C3, "x0": X3, "lr": 0.3},
    ),
    "zhang2019.sgd_second_moment": Row(
        zhang2019.sgd_second_moment,
        {"h": row(0.1, 1.0, 2.0), "lr": col(0.5, 1.0)},
        {"c": 1.0, "x0": 1.0, "batch_size": 2.0, "t": 5},
    ),
    "zhang2019.steps_to_target": Row(
        zhang2019.steps_to_target,
        {
            "losses": np.array([[3.0, 0.5, 2.0, 0.4], [3.0, 2.0, 1.0, 0.9]]),
            "tau": col(0.45, 1.0, 5.0),
        },
        {"convention": "after_last_above"},
        {"losses": 1},
    ),
    "zhang2019.nqm_steps_to_target": Row(
        zhang2019.nqm_steps_to_target,
        {"batch_size": row(1.0, 4.0, 64.0), "momentum": col(0.0, 0.9)},
        {"h": H3, "c": C3, "x0": X3, "lr": 0.2, "tau": 0.2, "max_steps": 2000},
    ),
    "zhang2019.optimal_lr_steps": Row(
        zhang2019.optimal_lr_steps,
        {"tau": row(0.15, 0.3), "momentum": col(0.0, 0.5)},
        {
            "h": H3,
            "c": C3,
            "x0": X3,
            "batch_sizes": [1.0, 8.0],
            "lrs": [0.05, 0.2, 0.5],
            "max_steps": 2000,
        },
    ),
    # dai_zhu2018
    "dai_zhu2018.diffusion": Row(
        dai_zhu2018.diffusion, {"lr": row(0.1, 0.4), "batch_size": col(8, 32)}, {"sigma2": 2.0}
    ),
    "dai_zhu2018.mean_first_passage_time": Row(
        dai_zhu2018.mean_first_passage_time,
        {"D": row(0.25, 0.5), "target": col(-0.3, 0.0)},
        {"potential": potential, "start": SHARP, "far": SHARP + 1.5, "n_grid": 2001},
    ),
    "dai_zhu2018.kramers_time": Row(
        dai_zhu2018.kramers_time,
        {"D": row(0.1, 0.25, 1e-3), "curvature_min": col(2.0, 8.0)},
        {"delta_f": 1.0, "curvature_saddle": -4.0},
    ),
    "dai_zhu2018.eyring_kramers_time": Row(
        dai_zhu2018.eyring_kramers_time,
        {
            "D": row(0.1, 0.2),
            "hessian_min": np.array(
                [[[8.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 1.0]], [[8.0, 1.0], [1.0, 2.0]]]
            )[:, None],
        },
        {"delta_f": 1.0, "hessian_saddle": [[-4.0, 0.0], [0.0, 2.0]]},
        {"hessian_min": 2},
    ),
    "dai_zhu2018.stationary_mass_ratio": Row(
        dai_zhu2018.stationary_mass_ratio,
        {"hessian_i": np.array([2.0, 8.0, 4.5])},
        {"hessian_j": 8.0},
        sequences=("hessian_j",),
    ),
    "dai_zhu2018.warped_potential": Row(
        dai_zhu2018.warped_potential, {"x": row(-1.0, 0.0, 0.8), "kappa": col(0.0, 0.5)}, {}
    ),
    "dai_zhu2018.warped_potential_grad": Row(
        dai_zhu2018.warped_potential_grad, {"x": row(-1.0, 0.0, 2.0), "kappa": col(0.0, 0.5)}, {}
    ),
    "dai_zhu2018.warped_potential_hess": Row(
        dai_zhu2018.warped_potential_hess, {"x": row(-1.0, 0.0, 2.0), "kappa": col(0.0, 0.5)}, {}
    ),
    "dai_zhu2018.warped_minima": Row(dai_zhu2018.warped_minima, {"kappa": row(0.0, 0.3, 0.9)}, {}),
    "dai_zhu2018.warped_minimum_curvatures": Row(
        dai_zhu2018.warped_minimum_curvatures, {"kappa": row(0.0, 0.3, 0.9)}, {}
    ),
    "dai_zhu2018.wall_position": Row(
        dai_zhu2018.wall_position, {"kappa": row(0.0, 0.5), "wall_offset": col(0.5, 1.0)}, {}
    ),
    "dai_zhu2018.double_well_potential": Row(
        dai_zhu2018.double_well_potential,
        {"x": row(-3.0, -1.0, 0.5), "wall_stiffness": col(1.0, 8.0)},
        {"kappa": 0.3, "wall_offset": 1.0},
    ),
    "dai_zhu2018.double_well_grad": Row(
        dai_zhu2018.double_well_grad,
        {"x": row(-3.0, -1.0, 0.5), "kappa": col(0.0, 0.3)},
        {"wall_offset": 1.0, "wall_stiffness": 8.0},
    ),
    "dai_zhu2018.double_well_hess": Row(
        dai_zhu2018.double_well_hess,
        {"x": row(-3.0, -1.0, 0.5), "wall_offset": col(0.5, 1.0)},
        {"kappa": 0.3, "wall_stiffness": 8.0},
    ),
    # perko2023: grids and schedules are core, the step, budget and floor broadcast
    "perko2023.linear_regression_g": Row(
        perko2023.linear_regression_g,
        {"t": row(0.0, 0.5, 1.5), "T": col(1.0, 2.0), "noise_std": col(0.0, 0.5)},
        {"eigvals": [1.0, 0.3], "e0": [1.0, 2.0]},
    ),
    "perko2023.optimal_batch_sizes": Row(
        perko2023.optimal_batch_sizes,
        {"budget": row(30.0, 100.0), "batch_size_min": col(1.0, 12.0, 40.0)},
        {"g": [1.0, 4.0, 0.1], "weights": 1.0},
        sequences=("weights",),
    ),
    "perko2023.optimal_batch_schedule": Row(
        perko2023.optimal_batch_schedule,
        {"h": row(0.01, 0.1), "n_samples": col(100.0, 1e4)},
        {"t": T_GRID, "g": G_GRID},
    ),
    "perko2023.noise_term": Row(
        perko2023.noise_term,
        {"h": row(0.01, 0.5)},
        {"t": T_GRID, "g": G_GRID, "batch_sizes": np.full(9, 4.0)},
    ),
    "perko2023.optimal_noise_term": Row(
        perko2023.optimal_noise_term, {"n_samples": row(8.0, 100.0)}, {"t": T_GRID, "g": G_GRID}
    ),
    "perko2023.constant_noise_term": Row(
        perko2023.constant_noise_term, {"n_samples": row(8.0, 100.0)}, {"t": T_GRID, "g": G_GRID}
    ),
    "perko2023.linear_regression_schedule": Row(
        perko2023.linear_regression_schedule,
        {"noise_std": row(0.0, 0.5), "n_samples": col(100.0, 1000.0)},
        {"eigvals": [1.0, 0.3], "e0": [1.0, 2.0], "h": 0.05, "n_steps": 10, "batch_size_min": 2.0},
    ),
    "perko2023.oracle_losses": Row(
        perko2023.oracle_losses,
        {"noise_std": row(0.0, 0.5), "h": col(0.1, 0.5)},
        {"eigvals": [1.0, 0.3], "e0": [1.0, 2.0], "batch_sizes": [1.0, 2.0, 4.0]},
    ),
    # smith2018, goyal2017, zhang2024
    "smith2018.noise_scale": Row(
        smith2018.noise_scale,
        {"batch_size": row(10.0, 100.0, 200.0), "momentum": col(0.0, 0.9)},
        {"lr": 0.1, "n_train": 100, "exact": True},
    ),
    "smith2018.batch_size_for_noise_scale": Row(
        smith2018.batch_size_for_noise_scale,
        {"g": row(100.0, 500.0), "n_train": col(10, 1000)},
        {"lr": 0.1, "momentum": 0.9},
    ),
    "smith2018.equivalent_batch_schedule": Row(
        smith2018.equivalent_batch_schedule,
        {"batch_size0": col(32.0, 128.0), "lr_factors": row(1.0, 0.2, 0.04)},
        {},
    ),
    "goyal2017.linear_scaling_lr": Row(
        goyal2017.linear_scaling_lr,
        {"batch_size": row(256, 8192), "lr_base": col(0.1, 0.2)},
        {"batch_size_base": 256},
    ),
    "goyal2017.gradual_warmup": Row(
        goyal2017.gradual_warmup,
        {"step": row(0, 5, 20), "warmup_steps": col(1, 10)},
        {"lr_start": 0.1, "lr_target": 3.2},
    ),
    "zhang2024.log_inverse_law": Row(
        zhang2024.log_inverse_law,
        {"batch_size": row(1.0, 10.0), "a": col(0.0, 100.0)},
        {"c": 1000.0},
    ),
    "zhang2024.critical_batch_size": Row(
        zhang2024.critical_batch_size,
        {"K_inf": row(0.0, 100.0), "overhead": col(0.1, 0.2)},
        {"batch_size0": 1.0, "alpha": 1000.0},
    ),
    "zhang2024.critical_batch_size_from_curve": Row(
        zhang2024.critical_batch_size_from_curve,
        {
            "steps": np.array(
                [
                    [100.0, 50.0, 35.0, 25.0],
                    [math.inf, 50.0, 35.0, 25.0],
                    [800.0, 400.0, 200.0, 100.0],
                ]
            ),
            "overhead": col(0.1, 0.2)[:, None],
        },
        {"batch_sizes": [1, 2, 4, 8]},
        {"steps": 1},
    ),
}


def _public_functions() -> set[str]:
    names = set()
    for module_name in theory.__all__:
        module = getattr(theory, module_name)
        for name in module.__all__:
            if inspect.isfunction(getattr(module, name)):
                names.add(f"{module_name}.{name}")
    return names


def test_every_public_theory_function_has_a_broadcasting_row():
    assert set(ROWS) == _public_functions()


def _shape(case: Row) -> tuple[int, ...]:
    return np.broadcast_shapes(
        *(np.shape(v)[: np.ndim(v) - case.core.get(k, 0)] for k, v in case.arrays.items())
    )


def _element(case: Row, index: tuple[int, ...]) -> dict[str, Any]:
    shape = _shape(case)
    out = {}
    for name, value in case.arrays.items():
        value = np.asarray(value)
        core = case.core.get(name, 0)
        lead = value.shape[: value.ndim - core]
        full = np.broadcast_to(value, shape + value.shape[value.ndim - core :])
        del lead
        item = full[index]
        out[name] = item.item() if core == 0 else item
    return out


def _compare(got: Any, want: Any, where: str) -> None:
    if dataclasses.is_dataclass(want):
        for f in dataclasses.fields(want):
            _compare(getattr(got, f.name), getattr(want, f.name), f"{where}.{f.name}")
    elif isinstance(want, tuple):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _compare(g, w, f"{where}[{i}]")
    else:
        np.testing.assert_allclose(
            np.asarray(got, dtype=float),
            np.asarray(want, dtype=float),
            rtol=1e-12,
            atol=0,
            equal_nan=True,
            err_msg=where,
        )


def _at(result: Any, index: tuple[int, ...]) -> Any:
    if dataclasses.is_dataclass(result):
        return type(result)(
            **{f.name: _at(getattr(result, f.name), index) for f in dataclasses.fields(result)}
        )
    if isinstance(result, tuple):
        return tuple(_at(r, index) for r in result)
    return np.asarray(result)[index]


@pytest.mark.parametrize("name", sorted(ROWS))
def test_on_arrays_each_element_is_the_scalar_call(name):
    case = ROWS[name]
    shape = _shape(case)
    assert np.prod(shape) >= 2, "a row must broadcast over several elements"
    result = case.func(**case.fixed, **case.arrays)
    for index in np.ndindex(*shape):
        want = case.func(**case.fixed, **_element(case, index))
        _compare(_at(result, index), want, f"{name}{list(index)}")


def _is_python_number(value: Any) -> bool:
    return type(value) in (float, int)


def _scalar_kind(value: Any, core_output: bool) -> bool:
    if dataclasses.is_dataclass(value):
        return all(
            _scalar_kind(getattr(value, f.name), core_output) for f in dataclasses.fields(value)
        )
    if isinstance(value, tuple):
        return all(_scalar_kind(v, core_output) for v in value)
    if core_output:
        return isinstance(value, np.ndarray) and value.ndim >= 1
    return _is_python_number(value)


@pytest.mark.parametrize("name", sorted(n for n, r in ROWS.items() if not r.core))
def test_scalars_in_give_numbers_out(name):
    case = ROWS[name]
    first = _element(case, (0,) * len(_shape(case)))
    array_result = case.func(**case.fixed, **case.arrays)
    scalar_result = case.func(**case.fixed, **first)

    def has_core(value: Any) -> bool:
        if dataclasses.is_dataclass(value):
            return any(has_core(getattr(value, f.name)) for f in dataclasses.fields(value))
        if isinstance(value, tuple):
            return any(has_core(v) for v in value)
        return np.ndim(value) > len(_shape(case))

    assert _scalar_kind(scalar_result, core_output=has_core(array_result)), scalar_result


#: Integers that set the length of a core dimension (or a numerical resolution): not broadcast.
LENGTHS = {"n_stages", "n_steps", "n_increases", "max_steps", "n_grid"}


def _broadcastable(case: Row) -> list[str]:
    return [
        k
        for k, v in case.fixed.items()
        if k not in LENGTHS
        and k not in case.sequences
        and not isinstance(v, bool)
        and isinstance(v, (int, float))
        and np.ndim(v) == 0
    ]


@pytest.mark.parametrize(
    ("name", "arg"), [(n, k) for n in sorted(ROWS) for k in _broadcastable(ROWS[n])]
)
def test_every_scalar_parameter_broadcasts_too(name, arg):
    # a new leading axis of two equal values: both halves equal the original result
    case = ROWS[name]
    base = case.func(**case.fixed, **case.arrays)
    stacked = np.full((2,) + (1,) * len(_shape(case)), case.fixed[arg])
    result = case.func(**{**case.fixed, arg: stacked}, **case.arrays)
    for i in range(2):
        _compare(_at(result, (i,)), base, f"{name} with {arg}[{i}]")
