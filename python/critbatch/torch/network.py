r"""A network problem on a device: many runs of one model as one ``(runs, parameters)`` tensor.

The iterate of a run is its model's parameters flattened into one vector (in the order of
``named_parameters()``), so the runner, the step rules of :mod:`critbatch.torch.optimizers` and
the stopping logic treat a network exactly as they treat a synthetic problem. The model itself is
used functionally: ``torch.func.functional_call`` evaluates it at a run's parameters.

* **Batched runs** (every model without buffers: the built-in MLP, 1-D CNN and the GroupNorm
  ResNet). All runs of a chunk that take the same batch size this step, every learning rate and
  every seed, get their minibatch gradients from one ``torch.func.vmap(torch.func.grad(...))``
  call over their parameter rows and their own minibatches (``(runs, b, ...)``); runs with other
  batch sizes form other calls. Checks evaluate all runs on the shared evaluation examples the
  same way. Measured on the 2-core development CPU (one thread, float32, MLP 64-32-10, b = 32):
  one step of 1, 8, 32 and 128 stacked runs cost 2.6, 4.0, 5.8 and 16 ms, 0.13 ms per run from
  32 runs on, against 0.7 to 1.2 ms for one ``nn.Module`` step.
* **Runs one by one** (models with buffers, such as BatchNorm's running statistics, which vmap
  cannot update per run): each run keeps its own copy of the buffers, updated in train mode, and
  gets its gradient from plain autograd; the parameters, the optimizer state and the loop are
  still the shared ones.
* **Checks** read only what the target needs: the mean training loss on the fixed evaluation
  subset (the first ``eval_train`` training examples) always (it also decides divergence), the
  validation accuracy only for ``accuracy_above``, the gradient norm of that loss only for
  ``grad_norm_below``. At a run's stop it adds the gradient norm, the validation and test
  accuracies and the noise scale for its record. Examples are evaluated in blocks of
  :data:`EVAL_BLOCK`, in eval mode.
* **Initial weights** depend on the sweep seed and the run's replicate only (common random
  numbers: runs that differ only in learning rate, batch size, optimizer or schedule start from
  the same weights): the model is built on the CPU with torch's generator seeded from
  ``(sweep seed, replicate)`` (:func:`init_seed`), so they are the same on every device.
* **Precision**: parameters, data and optimizer state in the plan's dtype (float32 by default);
  ``precision="bf16"`` runs the forward and backward passes under ``torch.autocast`` with
  bfloat16 (the parameters and the update stay in float32); ``"tf32"`` is set by the runner.
* **Noise scale** (``noise_scale = true``): the step's gradient is computed as the mean of the
  gradients of its two halves, :math:`G_B = (h G_h + (B - h) G_{B-h}) / B` with
  :math:`h = \lfloor B/2 \rfloor`, which is the same minibatch gradient (to rounding), and
  :math:`|G_h|^2`, :math:`|G_B|^2` feed the unbiased estimates of :math:`|G|^2` and
  :math:`\operatorname{tr}\Sigma` (McCandlish et al. 2018, App. A.1, arXiv:1812.06162;
  :mod:`critbatch.torch.noise_scale`), averaged over the run's steps by bias-corrected
  exponential moving averages as in gpt-neox's ``GradientNoiseScale``. For a rule with a
  diagonal preconditioner :math:`p` (Adam and its kin:
  :meth:`critbatch.torch.optimizers.StepRule.preconditioner`, which the runner hands over
  before each step's gradient with :meth:`NetworkOracle.set_preconditioner`), the same halves
  also feed :math:`\sum_i p_i (G_h)_i^2` and :math:`\sum_i p_i (G_B)_i^2` into a second pair of
  averages, which estimate :math:`G^\top P G` and :math:`\operatorname{tr}(P\Sigma)`: their ratio
  is the preconditioned noise scale (the ``noise_scale_preconditioned`` column; NaN for a rule
  without a preconditioner).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from critbatch import problems as specs
from critbatch.torch import memory, networks
from critbatch.torch.noise_scale import RunningNoiseScale, sq_norms
from critbatch.torch.problems import Batch, Oracle, TorchProblem, make_sampler
from critbatch.torch.rng import Streams

__all__ = ["EVAL_BLOCK", "NetworkProblem", "init_seed"]

#: Examples per block when a loss, an accuracy or a gradient is summed over a data set.
EVAL_BLOCK = 512
#: Floats of activations per input value of one example: the rough estimate that, with the
#: ``"activations"`` budget of :mod:`critbatch.torch.memory`, bounds the runs of one call.
FLOATS_PER_INPUT = 32


def init_seed(sweep_seed: int, replicate: int) -> int:
    """The seed of a replicate's initial weights: a function of both seeds only.

    Example:
        >>> init_seed(0, 1) == init_seed(0, 1) != init_seed(0, 2)
        True

    """
    state = np.random.SeedSequence([sweep_seed, replicate, 0x6E657473]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


class NetworkProblem(TorchProblem):
    """A :class:`critbatch.problems.Network` on one device, dtype and precision."""

    is_network = True

    def __init__(
        self, spec: specs.Network, device: Any, dtype: torch.dtype, precision: str = "highest"
    ):
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype
        self.dim = spec.dim
        self.n_samples = spec.n_samples
        self.sampling = spec.sampling
        self.model = networks.init(spec.model, spec.model_kwargs, 0).to(
            device=self.device, dtype=dtype
        )
        named = list(self.model.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [int(p.numel()) for _, p in named]
        self.buffers = {name: b.detach() for name, b in self.model.named_buffers()}
        if spec.noise_scale and self.buffers:
            raise ValueError(
                f"noise_scale: {spec.name!r} has buffers (BatchNorm statistics), "
                "whose batch statistics differ between half batches; use a "
                "model without them (norm='group') to measure the noise scale"
            )
        self.autocast = precision == "bf16"

        def tensor(a: np.ndarray, floats: bool) -> torch.Tensor:
            out = torch.from_numpy(np.array(a))
            return out.to(device=self.device, dtype=dtype if floats else torch.long)

        self.x, self.y = tensor(spec.x_train, True), tensor(spec.y_train, False)
        m = spec.eval_train
        self.x_eval, self.y_eval = self.x[:m], self.y[:m]
        self.x_val, self.y_val = tensor(spec.x_val, True), tensor(spec.y_val, False)
        self.x_test, self.y_test = tensor(spec.x_test, True), tensor(spec.y_test, False)
        per_example = max(1, FLOATS_PER_INPUT * int(np.prod(spec.input_shape)))
        self.pairs = max(1, memory.elements(self.device, "activations", dtype) // per_example)
        model = self.model

        def params(p: torch.Tensor) -> dict[str, torch.Tensor]:
            return {
                name: part.view(shape)
                for name, part, shape in zip(
                    self.names, torch.split(p, self.numels), self.shapes, strict=True
                )
            }

        def loss_mean(p: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            with self._precision():
                logits: torch.Tensor = torch.func.functional_call(model, params(p), (xb,))
            return F.cross_entropy(logits.float() if self.autocast else logits, yb)

        def loss_sum(p: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            with self._precision():
                logits: torch.Tensor = torch.func.functional_call(model, params(p), (xb,))
            return F.cross_entropy(logits.float() if self.autocast else logits, yb, reduction="sum")

        def correct(p: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            with self._precision():
                logits: torch.Tensor = torch.func.functional_call(model, params(p), (xb,))
            return (logits.argmax(-1) == yb).sum()

        self.params = params
        self._grad = torch.func.vmap(torch.func.grad(loss_mean))
        self._loss_sum = torch.func.vmap(loss_sum, in_dims=(0, None, None))
        self._grad_sum = torch.func.vmap(torch.func.grad(loss_sum), in_dims=(0, None, None))
        self._correct = torch.func.vmap(correct, in_dims=(0, None, None))

    def _precision(self) -> AbstractContextManager[Any]:
        if self.autocast:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # -- the iterate --------------------------------------------------------------------------

    def initial(self, replicates: np.ndarray, sweep_seed: int) -> torch.Tensor:
        """The flattened initial weights of each run (``(R, dim)``), from its replicate."""
        rows: dict[int, torch.Tensor] = {}
        for r in np.unique(replicates).tolist():
            module = networks.init(
                self.spec.model, self.spec.model_kwargs, init_seed(sweep_seed, int(r))
            )
            rows[r] = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
        x = torch.stack([rows[int(r)] for r in replicates])
        return x.to(device=self.device, dtype=self.dtype)

    # -- sums over a data set -----------------------------------------------------------------

    def _blocks(self, n: int) -> list[slice]:
        return [slice(i, min(i + EVAL_BLOCK, n)) for i in range(0, n, EVAL_BLOCK)]

    def _run_blocks(self, n_runs: int, examples: int) -> list[slice]:
        size = max(1, self.pairs // max(1, examples))
        return [slice(i, min(i + size, n_runs)) for i in range(0, n_runs, size)]

    def data_sum(
        self,
        what: str,
        x: torch.Tensor,
        xs: torch.Tensor,
        ys: torch.Tensor,
        buffers: dict[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        """Per run, the summed loss (``"loss"``), gradient (``"grad"``) or correct count."""
        self.model.eval()
        blocks = self._blocks(xs.shape[0])
        if buffers is None:
            fn = {"loss": self._loss_sum, "grad": self._grad_sum, "correct": self._correct}[what]
            parts = []
            for runs in self._run_blocks(x.shape[0], EVAL_BLOCK):
                total = None
                for blk in blocks:
                    part = fn(x[runs], xs[blk], ys[blk])
                    total = part if total is None else total + part
                assert total is not None
                parts.append(total)
            return torch.cat(parts) if len(parts) > 1 else parts[0]
        rows = []
        for r in range(x.shape[0]):
            bufs = {k: b[r] for k, b in buffers.items()}
            rows.append(self._one_sum(what, x[r], xs, ys, bufs, blocks))
        return torch.stack(rows)

    def _one_sum(
        self,
        what: str,
        p: torch.Tensor,
        xs: torch.Tensor,
        ys: torch.Tensor,
        bufs: dict[str, torch.Tensor],
        blocks: list[slice],
    ) -> torch.Tensor:
        """One run with its own buffers (the per-run path)."""
        leaf = p.detach().requires_grad_(what == "grad")
        total = None
        with torch.set_grad_enabled(what == "grad"):
            for blk in blocks:
                with self._precision():
                    logits: torch.Tensor = torch.func.functional_call(
                        self.model, {**self.params(leaf), **bufs}, (xs[blk],)
                    )
                if what == "correct":
                    part = (logits.argmax(-1) == ys[blk]).sum()
                else:
                    part = F.cross_entropy(
                        logits.float() if self.autocast else logits, ys[blk], reduction="sum"
                    )
                total = part if total is None else total + part
        assert total is not None
        if what == "grad":
            return torch.autograd.grad(total, leaf)[0]
        return total.detach()

    # -- TorchProblem --------------------------------------------------------------------------

    def loss(self, x: torch.Tensor, buffers: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The mean training loss of each row on the evaluation subset."""
        with torch.no_grad():
            total = self.data_sum("loss", x, self.x_eval, self.y_eval, buffers)
        return total.to(x.dtype) / self.x_eval.shape[0]

    def loss_grad(
        self, x: torch.Tensor, buffers: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean training loss on the evaluation subset and its gradient, per row."""
        m = self.x_eval.shape[0]
        grad = self.data_sum("grad", x, self.x_eval, self.y_eval, buffers) / m
        return self.loss(x, buffers), grad.to(x.dtype)

    def accuracy(
        self, x: torch.Tensor, split: str, buffers: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The accuracy of each row on ``"val"`` or ``"test"`` (NaN on an empty split)."""
        xs, ys = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        if xs.shape[0] == 0:
            return torch.full((x.shape[0],), math.nan, dtype=x.dtype, device=x.device)
        with torch.no_grad():
            correct = self.data_sum("correct", x, xs, ys, buffers)
        return correct.to(x.dtype) / xs.shape[0]

    def minibatch_grad(
        self,
        x: torch.Tensor,
        xb: torch.Tensor,
        yb: torch.Tensor,
        buffers: dict[str, torch.Tensor] | None,
        positions: list[int] | None,
    ) -> torch.Tensor:
        """Mean-loss gradients of the rows of ``x`` on their own minibatches ``(G, b, ...)``."""
        self.model.train()
        if buffers is None:
            parts = []
            for runs in self._run_blocks(x.shape[0], 4 * xb.shape[1]):
                try:
                    parts.append(self._grad(x[runs], xb[runs], yb[runs]))
                except RuntimeError as err:
                    if "randomness" in str(err):
                        raise ValueError(
                            f"model: {self.spec.model!r} draws random numbers (dropout?), which "
                            "batched runs cannot seed per run; remove them"
                        ) from None
                    raise
            return torch.cat(parts) if len(parts) > 1 else parts[0]
        assert positions is not None
        rows = []
        for i, r in enumerate(positions):
            leaf = x[i].detach().requires_grad_()
            bufs = {k: b[r] for k, b in buffers.items()}  # views: updated in place
            with self._precision():
                logits = torch.func.functional_call(
                    self.model, {**self.params(leaf), **bufs}, (xb[i],)
                )
            loss = F.cross_entropy(logits.float() if self.autocast else logits, yb[i])
            rows.append(torch.autograd.grad(loss, leaf)[0])
        return torch.stack(rows)

    def exact_grad(self, x: torch.Tensor) -> torch.Tensor:
        """The gradient of the checked loss (see :meth:`loss_grad`)."""
        return self.loss_grad(x)[1]

    def oracle(self, streams: Streams) -> Oracle:
        """The minibatch gradients (and buffers, noise scale) of a chunk's runs."""
        return NetworkOracle(self, streams)


class NetworkOracle(Oracle):
    """The runs of one chunk on a network: minibatches, buffers, checks and the noise scale."""

    problem: NetworkProblem

    def __init__(self, problem: NetworkProblem, streams: Streams):
        self.problem = problem
        self.sampler = make_sampler(problem.sampling, problem.spec.n_samples, streams)
        n_runs = len(streams)
        self.buffers: dict[str, torch.Tensor] | None = None
        if problem.buffers:
            self.buffers = {
                k: b[None].repeat(n_runs, *([1] * b.dim())).clone()
                for k, b in problem.buffers.items()
            }
        self.noise: RunningNoiseScale | None = None
        self.noise_preconditioned: RunningNoiseScale | None = None
        self.preconditioner: torch.Tensor | None = None
        if problem.spec.noise_scale:
            decay, device = problem.spec.noise_decay, problem.device
            self.noise = RunningNoiseScale(n_runs, decay, device)
            self.noise_preconditioned = RunningNoiseScale(n_runs, decay, device)

    @property
    def measures_noise(self) -> bool:
        """Whether the runs measure their noise scale (and so read a preconditioner)."""
        return self.noise is not None

    def set_preconditioner(self, p: torch.Tensor | None) -> None:
        """The diagonal preconditioner of the next step, ``(R, dim)`` on the device, or ``None``.

        The next :meth:`grad` weights its squared norms by it for the preconditioned noise
        scale; ``None`` (a rule without one, or its first step) leaves those averages as they are.
        """
        self.preconditioner = p

    def grad(self, x: torch.Tensor, batch: Batch, t: int) -> torch.Tensor:
        """One minibatch gradient per run (grouped by batch size)."""
        p = self.problem
        self.sampler.advance(batch)
        groups = batch.groups()
        out = x if len(groups) == 1 else torch.empty_like(x)
        result = None
        for b, rows in groups:
            index = self.sampler.draw(t, b, rows)
            xs = x if rows is None else x[rows]
            positions = (
                (list(range(x.shape[0])) if rows is None else rows.tolist())
                if self.buffers is not None
                else None
            )
            xb, yb = p.x[index], p.y[index]
            if self.noise is not None and b >= 2:
                h = b // 2
                g_small = p.minibatch_grad(xs, xb[:, :h], yb[:, :h], None, None)
                g_rest = p.minibatch_grad(xs, xb[:, h:], yb[:, h:], None, None)
                g = (h * g_small + (b - h) * g_rest) / b
                self.noise.update(rows, sq_norms(g_small), sq_norms(g), h, b)
                if self.preconditioner is not None and self.noise_preconditioned is not None:
                    w = self.preconditioner if rows is None else self.preconditioner[rows]
                    small_sq, big_sq = sq_norms(g_small, w), sq_norms(g, w)
                    self.noise_preconditioned.update(rows, small_sq, big_sq, h, b)
            else:
                g = p.minibatch_grad(xs, xb, yb, self.buffers, positions)
            if rows is None:
                result = g
            else:
                out[rows] = g
        self.sampler.finish(batch)
        self.preconditioner = None  # it was this step's
        return result if result is not None else out

    def select(self, keep: np.ndarray) -> None:
        """Keep the sampler state, buffers and noise averages of the runs at ``keep``."""
        self.sampler.select(keep)
        index = torch.as_tensor(keep, device=self.problem.device)
        if self.buffers is not None:
            self.buffers = {k: b[index] for k, b in self.buffers.items()}
        if self.noise is not None:
            self.noise.select(index)
        if self.noise_preconditioned is not None:
            self.noise_preconditioned.select(index)

    def check(self, x: torch.Tensor, accuracy: bool, grad_norm: bool) -> dict[str, torch.Tensor]:
        """The checked values: ``loss``, and ``accuracy`` and ``grad_norm`` when asked for."""
        p = self.problem
        out = {}
        if grad_norm:
            loss, g = p.loss_grad(x, self.buffers)
            out["loss"], out["grad_norm"] = loss, torch.linalg.vector_norm(g, dim=1)
        else:
            out["loss"] = p.loss(x, self.buffers)
        if accuracy:
            out["accuracy"] = p.accuracy(x, "val", self.buffers)
        return out

    def final(
        self, x: torch.Tensor, rows: np.ndarray, have: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The record columns of the runs at ``rows`` that stop: norms, accuracies, noise scale."""
        p = self.problem
        index = torch.as_tensor(rows, device=p.device)
        xs = x[index]
        bufs = None if self.buffers is None else {k: b[index] for k, b in self.buffers.items()}
        values: dict[str, torch.Tensor] = {}
        if "grad_norm" not in have:
            finite = torch.isfinite(xs).all(dim=1)
            grads = p.loss_grad(torch.where(finite[:, None], xs, 0.0), bufs)[1]
            norms = torch.linalg.vector_norm(grads, dim=1)
            values["grad_norm"] = torch.where(finite, norms, math.nan)
        if "accuracy" not in have:
            values["accuracy"] = p.accuracy(xs, "val", bufs)
        values["test_accuracy"] = p.accuracy(xs, "test", bufs)
        if self.noise is not None:
            values["noise_scale"] = self.noise.value()[index]
        if self.noise_preconditioned is not None:
            values["noise_scale_preconditioned"] = self.noise_preconditioned.value()[index]
        names = list(values)
        packed = torch.stack([values[k].to(torch.float64) for k in names]).cpu().numpy()
        return dict(zip(names, packed, strict=True))
