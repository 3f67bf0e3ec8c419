r"""Counter-based random streams on a device: a run's numbers depend on its seed and index only.

Design notes:

* **Why counters, not generators.** A ``torch.Generator`` per chunk made a run's numbers depend
  on the chunk it shared (which runs came before it in the generator's stream), and one
  generator per run costs one kernel launch per run per step, which a GPU chunk of 16,384 runs
  cannot afford. Here every number is a pure function of ``(run key, purpose, counter)``: the
  ``i``-th 64-bit word of a run's stream for a purpose is SplitMix64's output for the state
  :math:`k_p + (i + 1)\gamma` (Steele, Lea & Flood 2014), where :math:`k_p` is the run's purpose
  key and :math:`\gamma` the golden-ratio increment. A whole chunk's draws are then a handful of
  elementwise integer kernels over a ``(runs, width)`` tensor, with no state to carry, so the
  table is the same whatever the chunking, the device's thread count or the order of chunks.
* **The keys are the core's.** :func:`run_key`, :func:`crn_key` and :func:`purpose_key` are
  ``rust/rng.rs``'s ``run_key``, ``crn_key`` and ``purpose_seed`` (the same SplitMix64
  finalizers and constants), so a run is identified the same way on both backends, with
  common random numbers (:func:`plan_keys`) as without. The draws themselves differ (the core runs
  xoshiro generators): the backends agree in distribution, not bitwise
  (``tests/test_torch_agreement.py``).
* **Integer arithmetic in int64.** torch has no uint64 kernels on every device, so the words are
  int64 tensors; multiplication wraps modulo :math:`2^{64}` on CPU and CUDA (two's complement), and
  a logical right shift is an arithmetic one masked to the low bits.
* **Counters.** A draw of ``width`` values at counter ``c`` uses stream positions
  ``c * stride + j`` for ``j < width`` (``stride`` is the widest draw the purpose can make), so
  draws at different counters never overlap: the NQM noise of step ``t`` sits at ``t * dim``, the
  minibatch indices of step ``t`` at ``t * 2^24`` (:data:`critbatch.problems.MAX_DRAWN_BATCH`),
  the permutation of a run's epoch ``e`` at ``e * n``.
* **Distributions.** Uniform integers in ``[0, n)`` by Lemire's multiply-shift of the high 32 bits
  (bias below :math:`n / 2^{32}`); normals by Box-Muller from the two 32-bit halves of a word,
  :math:`u_1 = (h + 1) 2^{-32} \in (0, 1]`, :math:`u_2 = l\,2^{-32}`, both outputs used (so
  :math:`|z| \le 6.66`, the core's sampler's tail too); permutations by sorting 64-bit words.
* **Measured** (2 CPU cores shared with other jobs, one thread, float64, 1,024 runs x 100
  coordinates): a normal draw costs 2.9 ms against 2.1 ms for ``torch.randn`` of the same shape
  with a CPU generator; a whole NQM step got faster than with the previous one-generator-per-chunk
  streams (see :mod:`critbatch.torch.runner`). On a GPU these are a dozen memory-bound
  elementwise kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "INDICES",
    "NOISE",
    "PERMUTATION",
    "Streams",
    "crn_key",
    "plan_keys",
    "purpose_key",
    "run_key",
]

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_RUN = 0xD1B54A32D192ED03
_PURPOSE = 0xA0761D6478BD642F
_CRN_TAG = 0x6A09E667F3BCC909
_CRN_PARTS = (0xD1B54A32D192ED03, 0xCA5A826395121157, 0x8CB92BA72F3D8DD7)

#: Purpose tags: ``INDICES`` and ``NOISE`` are the core's (``rust/rng.rs``, ``Purpose``);
#: ``PERMUTATION`` is the torch backend's own (the core draws permutations from ``INDICES``).
INDICES, NOISE, PERMUTATION = 1, 2, 3
_PURPOSES = (INDICES, NOISE, PERMUTATION)


def _signed(word: int) -> int:
    """A 64-bit word as the int64 with the same bits."""
    word &= MASK64
    return word - (1 << 64) if word >= 1 << 63 else word


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * _MIX1) & MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & MASK64
    return z ^ (z >> 31)


def _splitmix64(state: int) -> tuple[int, int]:
    state = (state + GOLDEN) & MASK64
    return state, _mix(state)


def run_key(sweep_seed: int, run_index: int) -> int:
    """The key of a run's streams: ``rust/rng.rs``'s ``run_key(sweep_seed, run_index)``.

    Example:
        >>> run_key(0, 1) == run_key(0, 1) != run_key(0, 2)
        True

    """
    _, a = _splitmix64(sweep_seed & MASK64)
    _, key = _splitmix64(a ^ ((run_index * _RUN) & MASK64))
    return key


def crn_key(sweep_seed: int, problem: int, batch_size: int, replicate: int) -> int:
    """The key of a run under common random numbers: ``rust/rng.rs``'s ``crn_key``.

    Runs that differ only in optimizer, schedule or learning rate share it.

    Example:
        >>> crn_key(0, 0, 4, 1) == crn_key(0, 0, 4, 1) != crn_key(0, 0, 4, 2)
        True

    """
    _, h = _splitmix64((sweep_seed ^ _CRN_TAG) & MASK64)
    for part, mult in zip((problem, batch_size, replicate), _CRN_PARTS, strict=True):
        _, h = _splitmix64(h ^ ((part * mult) & MASK64))
    return h


def plan_keys(plan: Any, rows: np.ndarray) -> list[int]:
    """The keys of a plan's runs at ``rows``: :func:`crn_key` or :func:`run_key`, as it asks.

    Example:
        >>> import critbatch as cb
        >>> plan = cb.make_plan(cb.problems.nqm([1.0], [1.0]), ["sgd", "adam"], [2], [0.1], 1,
        ...                     cb.targets.target(), common_random_numbers=True)
        >>> a, b = plan_keys(plan, np.arange(2))
        >>> a == b == crn_key(0, 0, 2, 0)
        True

    """
    cells = plan.cells
    if not plan.common_random_numbers:
        return [run_key(plan.seed, int(i)) for i in cells["run_index"][rows].tolist()]
    return [
        crn_key(plan.seed, int(p), int(b), int(r))
        for p, b, r in zip(
            cells["problem_index"][rows].tolist(),
            cells["batch_size"][rows].tolist(),
            cells["seed"][rows].tolist(),
            strict=True,
        )
    ]


def purpose_key(key: int, purpose: int) -> int:
    """The seed of one purpose's stream: ``rust/rng.rs``'s ``purpose_seed``.

    Example:
        >>> purpose_key(run_key(0, 0), NOISE) != purpose_key(run_key(0, 0), INDICES)
        True

    """
    _, out = _splitmix64(key ^ ((purpose * _PURPOSE) & MASK64))
    return out


def _shr(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 words."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix_(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finalizer, elementwise and in place on int64 words."""
    z ^= _shr(z, 30)
    z *= _signed(_MIX1)
    z ^= _shr(z, 27)
    z *= _signed(_MIX2)
    z ^= _shr(z, 31)
    return z


class Streams:
    """The random streams of a chunk's runs, one row per run, on one device.

    Args:
        sweep_seed: the plan's seed.
        run_index: the runs' indices in the plan (``(R,)``).
        device: where the draws are made.
        keys: the runs' keys, when given (:func:`plan_keys`); ``sweep_seed`` and ``run_index``
            are then not used.

    Example:
        >>> s = Streams(7, np.array([0, 1, 2]), "cpu")
        >>> a = s.normal(NOISE, 5, 4, torch.float64)
        >>> b = Streams(7, np.array([1]), "cpu").normal(NOISE, 5, 4, torch.float64)
        >>> bool((a[1] == b[0]).all())  # run 1's draws, whatever the chunk
        True

    """

    def __init__(
        self, sweep_seed: int, run_index: np.ndarray, device: Any, *, keys: list[int] | None = None
    ) -> None:
        if keys is None:
            keys = [run_key(int(sweep_seed), int(i)) for i in np.asarray(run_index).tolist()]
        self.device = torch.device(device)
        self.keys = {
            p: torch.tensor(
                [_signed(purpose_key(k, p)) for k in keys], dtype=torch.int64, device=self.device
            )
            for p in _PURPOSES
        }

    def __len__(self) -> int:
        return int(self.keys[NOISE].shape[0])

    def select(self, keep: np.ndarray | torch.Tensor) -> None:
        """Keep the runs at positions ``keep``."""
        index = torch.as_tensor(keep, device=self.device)
        self.keys = {p: k[index] for p, k in self.keys.items()}

    def subset(self, rows: np.ndarray | torch.Tensor) -> Streams:
        """A view of the runs at positions ``rows`` (the others are untouched)."""
        out = Streams.__new__(Streams)
        out.device = self.device
        index = torch.as_tensor(rows, device=self.device)
        out.keys = {p: k[index] for p, k in self.keys.items()}
        return out

    def words(
        self, purpose: int, counter: int | torch.Tensor, stride: int, width: int
    ) -> torch.Tensor:
        """``(R, width)`` 64-bit words (as int64): positions ``counter * stride + j``.

        ``counter`` is one step count shared by all runs, or an ``(R,)`` int64 tensor.
        """
        j = torch.arange(1, width + 1, dtype=torch.int64, device=self.device)
        if isinstance(counter, torch.Tensor):
            pos = counter.to(torch.int64)[:, None] * stride + j[None, :]
        else:
            pos = (j + int(counter) * stride)[None, :]
        z = self.keys[purpose][:, None] + pos * _signed(GOLDEN)
        return _mix_(z)

    def integers(
        self, purpose: int, counter: int | torch.Tensor, stride: int, width: int, n: int
    ) -> torch.Tensor:
        """``(R, width)`` uniform integers in ``[0, n)`` (``n < 2^31``), int64."""
        return (_shr(self.words(purpose, counter, stride, width), 32) * n) >> 32

    def normal(
        self, purpose: int, counter: int | torch.Tensor, width: int, dtype: torch.dtype
    ) -> torch.Tensor:
        """``(R, width)`` standard normals at stream positions ``counter * width + ...``."""
        half = (width + 1) // 2
        z = self.words(purpose, counter, half, half)
        scale = 2.0**-32
        u1 = (_shr(z, 32) + 1).to(dtype) * scale
        u2 = (z & 0xFFFFFFFF).to(dtype) * scale
        radius = torch.sqrt(-2.0 * torch.log(u1))
        angle = (2.0 * torch.pi) * u2
        out = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
        return out[:, :width]

    def permutations(self, purpose: int, counter: torch.Tensor, n: int) -> torch.Tensor:
        """``(R, n)`` permutations of ``range(n)``, one per run, at per-run counters (epochs)."""
        return torch.argsort(self.words(purpose, counter, n, n), dim=1, stable=True)
