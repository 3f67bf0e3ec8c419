"""JAX peers (float32 or float64): ``vmap`` over runs, ``lax.scan`` over steps.

Each ``prepare_*`` function compiles the sweep ahead of time (``jit(...).lower(...).compile()``) and
returns a callable that executes it and returns the final loss of every run as a NumPy float64
array, so a benchmark times execution only, never tracing or compilation. Random numbers come
from JAX's default PRNG (``jax.random.key``), one key per run, split at every step.

float64 is switched on only inside these functions (``jax.enable_x64``, or
``jax.experimental.enable_x64`` on older JAX), never globally; float32 runs with it switched off.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benches.peers import LsqWorkload, NqmWorkload

__all__ = ["DTYPES", "prepare_lsq", "prepare_nqm"]

DTYPES = ("float32", "float64")


def _precision(dtype: str) -> AbstractContextManager[Any]:
    """A context in which JAX's 64-bit mode is on exactly when ``dtype`` is ``"float64"``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    wide = dtype == "float64"
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(wide)
    from jax.experimental import disable_x64, enable_x64  # JAX < 0.6

    return enable_x64() if wide else disable_x64()


def _compiled_runner(
    fn: Callable[..., Any], args: tuple[Any, ...], dtype: str
) -> Callable[[], np.ndarray]:
    """Compile ``fn`` for ``args`` now; the returned callable runs it and waits for the result."""
    compiled = jax.jit(fn).lower(*args).compile()

    def run() -> np.ndarray:
        with _precision(dtype):
            out = compiled(*args)
            return np.asarray(out.block_until_ready(), dtype=np.float64)

    return run


def prepare_nqm(w: NqmWorkload, *, dtype: str = "float32") -> Callable[[], np.ndarray]:
    """Minibatch SGD on the NQM in JAX: :math:`x \\leftarrow (1 - \\eta h) x - \\eta \\sqrt{c/b} z`.

    Example:
        >>> from benches.peers import NqmWorkload
        >>> losses = prepare_nqm(NqmWorkload(dim=3, runs=2, steps=5), dtype="float64")()
        >>> losses.shape
        (2,)
    """
    with _precision(dtype):
        h_np, c_np = w.spectrum()
        h = jnp.asarray(h_np, dtype=dtype)
        contraction = jnp.asarray(1.0 - w.lr * h_np, dtype=dtype)
        noise_scale = jnp.asarray(w.lr * np.sqrt(c_np / w.b), dtype=dtype)

        def one_run(
            key: jax.Array, h: jax.Array, contraction: jax.Array, noise_scale: jax.Array
        ) -> jax.Array:
            def step(carry: tuple[jax.Array, jax.Array], _: None) -> tuple[Any, None]:
                x, key = carry
                key, sub = jax.random.split(key)
                z = jax.random.normal(sub, (w.dim,), dtype=dtype)
                return (contraction * x - noise_scale * z, key), None

            x0 = jnp.ones(w.dim, dtype=dtype)
            (x, _), _ = lax.scan(step, (x0, key), None, length=w.steps)
            return 0.5 * jnp.sum(h * x * x)

        sweep = jax.vmap(one_run, in_axes=(0, None, None, None))
        keys = jax.random.split(jax.random.key(w.seed), w.runs)
        return _compiled_runner(sweep, (keys, h, contraction, noise_scale), dtype)


def prepare_lsq(w: LsqWorkload, *, dtype: str = "float32") -> Callable[[], np.ndarray]:
    """Minibatch SGD with replacement on least squares in JAX, from ``w = 0``.

    Each step of a run draws ``b`` indices with ``jax.random.randint`` and applies
    :math:`w \\leftarrow w - \\tfrac{\\eta}{b} X_B^\\top (X_B w - y_B)`; returns
    :math:`\\tfrac{1}{2n}\\|X w - y\\|^2` per run.

    Example:
        >>> from benches.peers import LsqWorkload
        >>> losses = prepare_lsq(LsqWorkload(n=16, dim=2, runs=3, steps=4, b=2))()
        >>> losses.shape
        (3,)
    """
    with _precision(dtype):
        X_np, y_np = w.data()
        X = jnp.asarray(X_np, dtype=dtype)
        y = jnp.asarray(y_np, dtype=dtype)
        scale = w.lr / w.b

        def one_run(key: jax.Array, X: jax.Array, y: jax.Array) -> jax.Array:
            def step(carry: tuple[jax.Array, jax.Array], _: None) -> tuple[Any, None]:
                weights, key = carry
                key, sub = jax.random.split(key)
                idx = jax.random.randint(sub, (w.b,), 0, w.n)
                xb = X[idx]
                grad = xb.T @ (xb @ weights - y[idx])
                return (weights - scale * grad, key), None

            w0 = jnp.zeros(w.dim, dtype=dtype)
            (weights, _), _ = lax.scan(step, (w0, key), None, length=w.steps)
            r = X @ weights - y
            return 0.5 * jnp.mean(r * r)

        sweep = jax.vmap(one_run, in_axes=(0, None, None))
        keys = jax.random.split(jax.random.key(w.seed), w.runs)
        return _compiled_runner(sweep, (keys, X, y), dtype)
