"""Type stubs of the compiled core (``rust/py.rs``); the Python spec classes build its arguments."""

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_DRAWN_BATCH", "loss_and_grad", "normals", "optimizer_trajectory", "run_plan"]

MAX_DRAWN_BATCH: int

def run_plan(
    problems: list[dict[str, Any]],
    optimizers: list[dict[str, Any]],
    schedules: list[dict[str, Any]],
    target: dict[str, Any],
    cells: dict[str, npt.NDArray[Any]],
    seed: int,
    threads: int,
    trajectory_every: int,
    progress: Callable[[int], object] | None = None,
    mode: str = "steps",
    common_random_numbers: bool = False,
    min_losses: list[float | None] | None = None,
    trajectory_metrics: list[str] | None = None,
    dtype: str = "float64",
    weight_averaging: float | None = None,
) -> dict[str, Any]:
    """Run the cells of a plan and return one column per outcome (see ``critbatch.results``).

    ``stop_reason`` comes back as a list of strings, every other column as a NumPy array. Every
    50 ms the call runs Python's signal handlers and passes the number of finished runs to
    ``progress``; an exception from either cancels the sweep and is raised once the runs in
    flight have stopped, with ``partial_outcomes`` (the finished runs' columns and ``rows``, their
    positions in ``cells``) attached. ``mode`` is ``"steps"`` or ``"exact_jumps"``.
    ``common_random_numbers`` keys runs by (seed, problem, batch size, replicate: the ``seed``
    cell column) instead of the run index; ``min_losses`` holds each problem's exact minimum,
    which ``target["loss_gap_below"]`` is measured from. Every ``trajectory_every`` steps a run
    records the metrics ``trajectory_metrics`` names (``"loss"``, ``"grad_norm"``; default the
    loss only): ``trajectories`` and ``grad_norm_trajectories`` hold one array per run each, or
    are empty for a metric not recorded. ``dtype``
    (``"float64"`` or ``"float32"``) is the float type the runs compute in; ``weight_averaging``
    (a decay in (0, 1)) makes every check read the bias-corrected average of the iterates.
    """

def optimizer_trajectory(
    optimizer: dict[str, Any],
    x0: npt.NDArray[np.float64],
    grads: npt.NDArray[np.float64],
    lrs: npt.NDArray[np.float64],
    layers: list[int] | None = None,
) -> npt.NDArray[np.float64]:
    """The iterates ``x_1..x_K`` of an optimizer fed a fixed gradient sequence."""

def loss_and_grad(
    problem: dict[str, Any], x: npt.NDArray[np.float64]
) -> tuple[float, npt.NDArray[np.float64]]:
    """The exact loss and full gradient of a problem at ``x``."""

def normals(seed: int, run_index: int, n: int) -> npt.NDArray[np.float64]:
    """``n`` standard normals from the core's sampler for the run ``(seed, run_index)``."""
