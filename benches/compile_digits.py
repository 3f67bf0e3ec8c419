"""Does ``torch.compile`` pay for the torch backend's MLP run loop on the CPU? (a script)

Two measurements on the digits MLP (64-32-10, float32, one torch thread), each eager against
``torch.compile`` (inductor, default mode) of the batched minibatch gradient,
``vmap(grad(loss))`` of :class:`critbatch.torch.network.NetworkProblem`, the step's main cost:

* ``step``: the steady-state time of one batched gradient for ``R`` runs at batch size ``b``
  (median of repeated calls after warm-up; the compile time is reported apart);
* ``sweep``: the wall time of :func:`critbatch.torch.runner.run_plan` on a small digits grid
  (SGD and Adam, b = 32 and 128, 3 seeds and 2 learning rates, a check every 10 steps), where
  runs stop at different steps, so the compiled function meets new run counts as chunks shrink
  (each a recompilation, or a dynamic-shape graph after the first).

Run: ``python benches/compile_digits.py`` (a few minutes on 2 cores; ``TORCHINDUCTOR_CACHE_DIR``
pointing to an empty folder gives the cold-cache figures). Nothing is asserted and nothing here
runs in the test suite; the figures are in the torch runner's design notes.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any


def _step_times(problem: Any, runs: int, b: int, repeats: int) -> list[float]:
    import numpy as np
    import torch

    x = problem.initial(np.zeros(runs, dtype=int), 0)
    gen = torch.Generator().manual_seed(0)
    index = torch.randint(problem.n_samples, (runs, b), generator=gen)
    xb, yb = problem.x[index], problem.y[index]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        problem._grad(x, xb, yb)
        times.append(time.perf_counter() - start)
    return times


def step(runs: int, b: int, dynamic: bool | None = None) -> dict[str, float]:
    """Steady-state ms per batched gradient, eager and compiled, and the compile time in s."""
    import torch

    import critbatch as cb
    from critbatch.torch.network import NetworkProblem

    spec = cb.problems.network("mlp", "digits", model_kwargs={"hidden": [32]})
    eager = NetworkProblem(spec, "cpu", torch.float32)
    compiled = NetworkProblem(spec, "cpu", torch.float32)
    compiled._grad = torch.compile(compiled._grad, dynamic=dynamic)
    start = time.perf_counter()
    _step_times(compiled, runs, b, 1)
    first = time.perf_counter() - start
    out = {}
    for name, problem in (("eager", eager), ("compiled", compiled)):
        _step_times(problem, runs, b, 5)
        out[name] = 1e3 * statistics.median(_step_times(problem, runs, b, 50))
    out["compile_s"] = first
    return out


def sweep(compiled: bool, dynamic: bool | None = None) -> float:
    """Wall seconds of a small digits sweep through ``run_plan``."""
    import torch

    import critbatch as cb
    from critbatch.torch import network
    from critbatch.torch.runner import run_plan

    spec = cb.problems.network("mlp", "digits", model_kwargs={"hidden": [32]})
    plan = cb.make_plan(
        spec,
        ["sgd", "adam"],
        [32, 128],
        [0.03, 0.3],
        3,
        cb.targets.target(loss_below=0.3, check_every=10, max_steps=1000),
    )
    original = network.NetworkProblem.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._grad = torch.compile(self._grad, dynamic=dynamic)

    if compiled:
        network.NetworkProblem.__init__ = init  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        run_plan(plan)
        return time.perf_counter() - start
    finally:
        network.NetworkProblem.__init__ = original  # type: ignore[method-assign]


def main() -> int:
    import torch

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, float32, MLP 64-32-10 on digits")
    for dynamic in (None, True):
        for runs, b in ((8, 32), (32, 32), (128, 32), (32, 128)):
            r = step(runs, b, dynamic)
            print(
                f"step R={runs:4d} b={b:4d} dynamic={dynamic}: eager {r['eager']:.2f} ms, "
                f"compiled {r['compiled']:.2f} ms ({r['eager'] / r['compiled']:.2f}x), first "
                f"compiled call {r['compile_s']:.1f} s"
            )
    eager = sweep(False)
    static, dynamic_shapes = sweep(True), sweep(True, dynamic=True)
    print(
        f"sweep (24 runs): eager {eager:.1f} s, compiled {static:.1f} s, compiled with "
        f"dynamic shapes {dynamic_shapes:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
