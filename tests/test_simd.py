"""Every SIMD level the CPU has gives bitwise the same table, in both dtypes (``rust/simd.rs``).

The core picks AVX-512, AVX2 or its portable build at run time; ``CRITBATCH_SIMD`` caps the
level for a whole process (read once), so each level runs in its own interpreter and prints a
digest of the table's bytes. A level the CPU lacks falls back to the best one it has, so on such
a CPU two rows of the table run the same code and the test still holds. The Rust tests
(``run::tests``, ``rng::tests``) force each level inside one process as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

LEVELS = ("portable", "avx2", "avx512")

# A small grid that passes through every kernel compiled per level: the normal sampler (NQM),
# minibatch gathers and the fixed-order dot product (least squares, logistic), the optimizers'
# updates, per-step loss checks and a recorded trajectory; the dtype is the script's argument.
SCRIPT = textwrap.dedent(
    """
    import hashlib
    import sys
    import numpy as np
    import critbatch as cb

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 9))
    y = X @ rng.standard_normal(9)
    h = 1.0 / np.arange(1.0, 38.0)
    problems = [
        cb.problems.nqm(h, h, 1.0),
        cb.problems.least_squares(X, y, sampling="with_replacement"),
        cb.problems.logistic(X, np.sign(y), sampling="shuffle"),
    ]
    optimizers = [cb.optimizers.sgd(), cb.optimizers.adam()]
    target = cb.targets.target(loss_below=1e-3, max_steps=300, check_every=1)
    res = cb.sweep(problems, optimizers, [1, 4], [0.05, 0.2], 3, target, seed=7,
                   threads=2, trajectory_every=5, dtype=sys.argv[1])
    digest = hashlib.sha256()
    for column in ("steps", "sfo", "final_loss", "final_grad_norm", "final_x0", "stop_reason"):
        digest.update(repr(np.asarray(res[column]).tolist()).encode())
    for trajectory in res.trajectories:
        digest.update(np.asarray(trajectory, dtype=np.float64).tobytes())
    print(len(res), digest.hexdigest())
    """
)


def _digest(level: str, dtype: str) -> str:
    env = {**os.environ, "CRITBATCH_SIMD": level}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, dtype],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("level", LEVELS[1:])
def test_a_simd_level_gives_the_portable_table_bitwise(level, dtype):
    assert _digest(level, dtype) == _digest("portable", dtype)
