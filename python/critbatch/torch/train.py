r"""Steps to target for real networks: K(b) of a model trained on a data set by torch.optim.

A *problem* is a network, a data set and the mean cross-entropy loss
(:func:`network_problem`); a *target* is a training-loss level, a test-accuracy level, or both
(:func:`network_target`). :func:`train_sweep` runs the grid (problem, optimizer, schedule,
batch size, learning rate, seed), in that order from slowest to fastest, and returns a
:class:`critbatch.results.Results` with the columns of the synthetic sweeps, so that
:func:`critbatch.fit.fit` and :func:`critbatch.tuning.best_learning_rate` read it unchanged.
:func:`batch_size_sweep` wraps it for K(b) and N(b) at the best learning rate per batch size.

Semantics of one run (those of :mod:`critbatch.targets`, with the loss of a network):

* At step 0 and every ``check_every`` steps (and at ``max_steps``), the model is put in eval
  mode and the *training loss* (mean cross-entropy over the training set, or its first
  ``eval_train`` examples) and the *test accuracy* (over the whole test set) are computed.
  The run diverges if the loss or a parameter is not finite, or the loss exceeds
  ``divergence_factor * max(|loss_0|, 1)``; otherwise it reaches the target if the loss is
  ``<= loss_below`` or the accuracy is ``>= accuracy_above``; otherwise it stops unreached at
  ``max_steps``. ``steps`` is the number of updates at the first check where it stopped
  (the first crossing, to a resolution of ``check_every``), and ``sfo`` the examples used.
* Between checks it takes one step in train mode on a minibatch of
  :math:`b_t = \min(\lceil b_0 \cdot \text{factor}(\tau) \rceil, b_{max})` examples with
  learning rate :math:`\eta_0 \cdot \text{factor}(\tau)` (:mod:`critbatch.schedules`;
  :math:`\tau` = steps, or examples seen / ``n_train`` for ``unit="epoch"``). Minibatches are
  drawn by ``sampling="shuffle"`` (a fresh permutation per epoch, consecutive slices of it;
  when fewer than :math:`b_t` examples are left, the rest is dropped and a new epoch starts)
  or ``"with_replacement"`` (i.i.d. uniform indices).
* Optimizers are ``torch.optim.SGD`` (``sgd``; ``heavy_ball`` as ``momentum, dampening``;
  ``nesterov`` as ``momentum, nesterov=True``), ``torch.optim.Adam`` (``betas, eps,
  amsgrad``) and ``torch.optim.RMSprop`` (``alpha, eps, momentum, centered``), built from the
  :mod:`critbatch.optimizers` specs with their hyperparameters unchanged. One exception:
  ``nesterov`` with ``momentum = 0`` is plain SGD (torch refuses ``nesterov=True`` without
  momentum; the update is the same).
* ``final_loss`` is the training loss at the stop, ``final_grad_norm`` the norm of its full
  gradient (same examples, eval mode), ``final_x0`` is NaN (a network has no distinguished
  coordinate), ``wall_time`` the seconds from the start of the run's group to its stop. The test
  accuracy at the stop is in ``results.specs["final_test_accuracy"]`` (one value per row).

Random numbers: the initial weights and the minibatch stream of a run depend only on the sweep
``seed`` and the run's replicate ``seed`` (through ``numpy.random.SeedSequence``), not on its
learning rate, batch size or optimizer: runs that differ only in those start from the same
weights and see the same example order (common random numbers, which make the learning-rate
comparison less noisy). Weights are drawn on the CPU with torch's default initializers, so
they are the same on every device.

Design notes (which path runs what):

* **vmap** (``vectorize="auto"`` picks it for ``mlp``, the digits MLP, when a cell has at
  least ``AUTO_MIN_RUNS = 8`` runs): all runs of one (problem, optimizer, schedule, batch size)
  cell, every learning rate and every seed, advance together as one stacked model: the
  parameters of the runs at one learning rate form one ``(runs, ...)`` tensor per weight, one
  ``torch.optim`` parameter group per learning rate, and the per-run gradients come from
  ``torch.func.vmap(torch.func.grad(...))`` over ``torch.func.functional_call``.
  ``torch.optim``'s updates are elementwise, so a stacked update equals the per-model updates.
  Runs that stop leave the stacked tensors (parameters and optimizer state are cut down), so a
  finished run costs nothing afterwards. Measured on the 2-core development CPU (one thread,
  float32, MLP 64-32-10, b = 32): one step costs 2.6, 4.0, 5.8 and 16 ms for 1, 8, 32 and 128
  stacked runs (0.50, 0.18 and 0.13 ms per run from 8 runs on), against 0.7 to 1.2 ms for one
  ``nn.Module`` step; so stacking pays from about 8 runs, and the more runs, the more.
* **loop** (``cnn1d`` and ``resnet``, or ``vectorize=False``): one ``nn.Module`` and one
  ``torch.optim`` optimizer per run, trained to its stop before the next run starts, so
  ``wall_time`` is that run's own time to target. Convolutions on real batches already fill a
  device, and ``vmap`` cannot carry BatchNorm's running statistics (``norm="batch"``).
  ``vectorize=True`` forces the stacked path on any model without buffers.

Example:
    >>> import critbatch as cb
    >>> problem = network_problem("mlp", "digits", model_kwargs={"hidden": (16,)})
    >>> res = train_sweep(problem, "adam", [32], [0.01], 2,
    ...                   network_target(loss_below=1.0, check_every=10, max_steps=400))
    >>> bool(res["reached"].all()), sorted(res.columns) == sorted(cb.results.COLUMNS)
    (True, True)

"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from critbatch import _validate as v
from critbatch.optimizers import Optimizer, from_name
from critbatch.plan import as_list, check_batch_bounds, grid_axes
from critbatch.results import COLUMNS, Results, stop_reasons
from critbatch.schedules import Rule, Schedule
from critbatch.targets import Target
from critbatch.torch import networks
from critbatch.torch.datasets import Dataset, load

__all__ = [
    "DTYPES",
    "SAMPLINGS",
    "BatchSizeSweep",
    "NetworkProblem",
    "NetworkTarget",
    "batch_size_sweep",
    "build_model",
    "network_problem",
    "network_target",
    "replicate_seeds",
    "torch_optimizer",
    "train_sweep",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
SAMPLINGS = ("shuffle", "with_replacement")
# vectorize="auto" stacks an MLP's runs when a (batch size, optimizer) cell has at least this
# many (learning rate x seed) runs; below it the per-module loop is as fast (measured below).
AUTO_MIN_RUNS = 8
# Examples per block when a loss or an accuracy is summed over a data set.
EVAL_BLOCK = 2048


# ---------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True, eq=False)
class NetworkProblem:
    """A network, a data set and the mean cross-entropy loss (see :func:`network_problem`)."""

    name: str
    model: str
    model_kwargs: dict[str, Any]
    dataset: Dataset
    sampling: str = "shuffle"
    eval_train: int | None = None

    @property
    def n_samples(self) -> int:
        """The number of training examples."""
        return self.dataset.n_train


def _model_defaults(model: str, data: Dataset) -> dict[str, Any]:
    shape = data.input_shape
    if model == "mlp":
        return {"in_features": int(np.prod(shape)), "classes": data.classes}
    if model == "cnn1d":
        return {"length": int(np.prod(shape)), "classes": data.classes}
    return {"in_channels": shape[0], "classes": data.classes}


def network_problem(
    model: str, dataset: str | Dataset, *, model_kwargs: dict[str, Any] | None = None,
    dataset_kwargs: dict[str, Any] | None = None, sampling: str = "shuffle",
    eval_train: int | None = None, name: str = "",
) -> NetworkProblem:
    """Describe a real-network problem: model + data set + mean cross-entropy.

    Args:
        model: ``"mlp"``, ``"cnn1d"`` or ``"resnet"`` (:mod:`critbatch.torch.networks`).
        dataset: a :class:`critbatch.torch.datasets.Dataset`, or a loader name (``"digits"``,
            ``"mnist1d"``, ``"cifar10"``) loaded with ``dataset_kwargs``.
        model_kwargs: keyword arguments of the model builder; the input size and the number of
            classes default to the data set's.
        dataset_kwargs: keyword arguments of the loader (only with a name).
        sampling: ``"shuffle"`` (epochs of a random permutation) or ``"with_replacement"``.
        eval_train: check the training loss on the first ``eval_train`` training examples
            only (None: all of them).
        name: the label in result tables (default ``"<model>/<dataset>"``).

    Returns:
        A :class:`NetworkProblem`.

    Raises:
        ValueError: naming the bad argument (the model is built once to check its arguments).

    Example:
        >>> p = network_problem("mlp", "digits", model_kwargs={"hidden": (8,)})
        >>> p.name, p.model_kwargs["in_features"], p.n_samples
        ('mlp/digits', 64, 1348)

    """
    v.choice("model", model, tuple(networks.MODELS))
    if isinstance(dataset, Dataset):
        if dataset_kwargs:
            raise ValueError("dataset_kwargs must be empty when dataset is a Dataset, got "
                             f"{dataset_kwargs!r}")
        data = dataset
    elif isinstance(dataset, str):
        data = load(dataset, **(dataset_kwargs or {}))
    else:
        raise TypeError(f"dataset must be a Dataset or a loader name, got {type(dataset).__name__}")
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict, got {type(model_kwargs).__name__}")
    kwargs = {**_model_defaults(model, data), **(model_kwargs or {})}
    sampling = v.choice("sampling", sampling, SAMPLINGS)
    if eval_train is not None:
        eval_train = min(v.positive_int("eval_train", eval_train), data.n_train)
    problem = NetworkProblem(name or f"{model}/{data.name}", model, kwargs, data, sampling,
                             eval_train)
    probe = build_model(problem, 0)
    with torch.no_grad():
        out = probe.eval()(torch.tensor(data.x_train[:1]))
    if out.shape != (1, data.classes):
        raise ValueError(f"model_kwargs: {model!r} maps one input to shape {tuple(out.shape)}, "
                         f"expected (1, {data.classes})")
    return problem


@dataclass(frozen=True)
class NetworkTarget:
    """When a network run stops (see :func:`network_target`)."""

    loss_below: float | None = None
    accuracy_above: float | None = None
    check_every: int = 10
    max_steps: int = 1000
    divergence_factor: float = 1e6
    name: str = ""


def network_target(
    *, loss_below: float | None = None, accuracy_above: float | None = None,
    check_every: int = 10, max_steps: int = 1000, divergence_factor: float = 1e6, name: str = "",
) -> NetworkTarget:
    """Build a validated :class:`NetworkTarget` (no criterion: every run uses its budget).

    Args:
        loss_below: reach when the training loss is ``<=`` this.
        accuracy_above: reach when the test accuracy (a fraction) is ``>=`` this, in (0, 1].
        check_every: evaluate every this many steps (and at step 0 and ``max_steps``).
        max_steps: the step budget.
        divergence_factor: diverged when the loss exceeds this times ``max(|loss_0|, 1)``.
        name: a label (default built from the criteria).

    Returns:
        The target.

    Example:
        >>> network_target(accuracy_above=0.9, max_steps=500).name
        'acc>=0.9'

    """
    if loss_below is not None:
        loss_below = v.real("loss_below", loss_below)
    if accuracy_above is not None:
        accuracy_above = v.real("accuracy_above", accuracy_above)
        if not 0 < accuracy_above <= 1:
            raise ValueError(f"accuracy_above must be in (0, 1], got {accuracy_above!r}")
    factor = v.positive("divergence_factor", divergence_factor, allow_inf=True)
    if factor <= 1:
        raise ValueError(f"divergence_factor must exceed 1, got {divergence_factor!r}")
    max_steps = v.positive_int("max_steps", max_steps)
    parts = [f"loss<={loss_below:g}" if loss_below is not None else "",
             f"acc>={accuracy_above:g}" if accuracy_above is not None else ""]
    return NetworkTarget(loss_below, accuracy_above, v.positive_int("check_every", check_every),
                         max_steps, factor,
                         name or (",".join(p for p in parts if p) or f"budget {max_steps}"))


def _as_target(target: Any) -> NetworkTarget:
    if isinstance(target, NetworkTarget):
        return target
    if isinstance(target, Target):
        if target.grad_norm_below is not None or target.position_below is not None:
            raise ValueError("target: networks support loss_below (and accuracy_above through "
                             "network_target), not grad_norm_below or position_below")
        return network_target(loss_below=target.loss_below, check_every=target.check_every,
                              max_steps=target.max_steps,
                              divergence_factor=target.divergence_factor, name=target.name)
    raise TypeError(f"target must be a NetworkTarget (or a critbatch Target), got "
                    f"{type(target).__name__}")


def replicate_seeds(sweep_seed: int, replicate: int) -> tuple[int, int]:
    """Return the (weights, minibatch) seeds of a replicate: a function of both seeds only.

    Example:
        >>> replicate_seeds(0, 1) == replicate_seeds(0, 1) != replicate_seeds(0, 2)
        True

    """
    state = np.random.SeedSequence([sweep_seed, replicate, 0x6E657473]).generate_state(4)
    return int(state[0]) << 32 | int(state[1]), int(state[2]) << 32 | int(state[3])


def build_model(problem: NetworkProblem, init_seed: int) -> nn.Module:
    """Build the problem's model on the CPU with weights from ``init_seed`` (global RNG untouched).

    Example:
        >>> p = network_problem("mlp", "digits", model_kwargs={"hidden": (4,)})
        >>> a, b = build_model(p, 1), build_model(p, 1)
        >>> bool(all((x == y).all() for x, y in zip(a.parameters(), b.parameters())))
        True

    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return networks.build(problem.model, **problem.model_kwargs)


def torch_optimizer(spec: Optimizer, params: Any, lr: float) -> torch.optim.Optimizer:
    """Return the ``torch.optim`` optimizer of a critbatch spec (see the module docstring).

    Args:
        spec: an optimizer spec from :mod:`critbatch.optimizers`.
        params: parameters or parameter groups, as ``torch.optim`` takes them.
        lr: the learning rate (the default of groups without their own).

    Returns:
        ``torch.optim.SGD``, ``Adam`` or ``RMSprop``.

    Example:
        >>> import critbatch as cb
        >>> w = torch.zeros(2, requires_grad=True)
        >>> o = torch_optimizer(cb.optimizers.nesterov(0.9), [w], 0.1)
        >>> type(o).__name__, o.defaults["nesterov"], o.defaults["momentum"]
        ('SGD', True, 0.9)

    """
    if not isinstance(spec, Optimizer):
        raise TypeError(f"optimizer must be a critbatch Optimizer, got {type(spec).__name__}")
    if spec.kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if spec.kind == "heavy_ball":
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, dampening=spec.dampening)
    if spec.kind == "nesterov":
        if spec.momentum == 0:
            return torch.optim.SGD(params, lr=lr)
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, nesterov=True)
    if spec.kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=spec.betas, eps=spec.eps,
                                amsgrad=spec.amsgrad)
    if spec.kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=spec.alpha, eps=spec.eps,
                                   momentum=spec.momentum, centered=spec.centered)
    raise ValueError(f"optimizer.kind {spec.kind!r} has no torch.optim counterpart")


# ---------------------------------------------------------------------------------------------
# Minibatch streams


class _Sampler:
    """The minibatch index stream of one run (its own CPU generator)."""

    def __init__(self, n: int, sampling: str, seed: int):
        self.n, self.sampling = n, sampling
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.int64)
        self.cursor = 0

    def next(self, b: int) -> torch.Tensor:
        if self.sampling == "with_replacement":
            return torch.randint(self.n, (b,), generator=self.generator)
        if self.cursor + b > self.order.shape[0]:
            self.order = torch.randperm(self.n, generator=self.generator)
            self.cursor = 0
        out = self.order[self.cursor:self.cursor + b]
        self.cursor += b
        return out


# ---------------------------------------------------------------------------------------------
# Engines: a set of runs that step together (stacked under vmap, or a single module)


@dataclass
class _Data:
    x: torch.Tensor
    y: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _device_data(problem: NetworkProblem, device: torch.device, dtype: torch.dtype) -> _Data:
    d = problem.dataset
    x = torch.tensor(d.x_train, device=device, dtype=dtype)
    y = torch.tensor(d.y_train, device=device)
    m = problem.eval_train or d.n_train
    return _Data(x, y, x[:m], y[:m], torch.tensor(d.x_test, device=device, dtype=dtype),
                 torch.tensor(d.y_test, device=device))


class _Engine:
    """Runs advanced together; subclasses hold the parameters and the optimizer."""

    n: int

    def step(self, index: torch.Tensor, lr_factor: float) -> None:
        raise NotImplementedError

    def evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def grad_norm(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def keep(self, rows: np.ndarray) -> None:
        raise NotImplementedError


def _set_lr(opt: torch.optim.Optimizer, base: list[float], factor: float) -> None:
    for group, lr in zip(opt.param_groups, base, strict=True):
        group["lr"] = lr * factor


class _ModuleEngine(_Engine):
    """One run: an ``nn.Module`` and its ``torch.optim`` optimizer."""

    def __init__(self, model: nn.Module, spec: Optimizer, lr: float, data: _Data):
        self.n = 1
        self.model, self.data = model, data
        self.opt = torch_optimizer(spec, model.parameters(), lr)
        self.base = [lr]

    def step(self, index: torch.Tensor, lr_factor: float) -> None:
        _set_lr(self.opt, self.base, lr_factor)
        index = index[0].to(self.data.x.device)
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(self.data.x[index]), self.data.y[index]).backward()
        self.opt.step()

    def evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.model.eval()
        d = self.data
        with torch.no_grad():
            loss = sum(F.cross_entropy(self.model(d.x_eval[i:i + EVAL_BLOCK]),
                                       d.y_eval[i:i + EVAL_BLOCK], reduction="sum")
                       for i in range(0, d.x_eval.shape[0], EVAL_BLOCK))
            correct = sum((self.model(d.x_test[i:i + EVAL_BLOCK]).argmax(1)
                           == d.y_test[i:i + EVAL_BLOCK]).sum()
                          for i in range(0, d.x_test.shape[0], EVAL_BLOCK))
            finite = bool(torch.stack([torch.isfinite(p).all()
                                       for p in self.model.parameters()]).all())
        return (np.array([float(loss) / d.x_eval.shape[0]]),
                np.array([float(correct) / d.x_test.shape[0]]), np.array([finite]))

    def grad_norm(self, rows: np.ndarray) -> np.ndarray:
        self.model.eval()
        d = self.data
        self.model.zero_grad(set_to_none=True)
        for i in range(0, d.x_eval.shape[0], EVAL_BLOCK):
            (F.cross_entropy(self.model(d.x_eval[i:i + EVAL_BLOCK]), d.y_eval[i:i + EVAL_BLOCK],
                             reduction="sum") / d.x_eval.shape[0]).backward()
        squares = sum(float((p.grad**2).sum()) for p in self.model.parameters()
                      if p.grad is not None)
        self.model.zero_grad(set_to_none=True)
        return np.array([math.sqrt(squares)])

    def keep(self, rows: np.ndarray) -> None:
        self.n = int(rows.size)


class _StackedEngine(_Engine):
    """Runs of one optimizer and batch size, stacked: one parameter group per learning rate."""

    def __init__(self, models: list[nn.Module], spec: Optimizer, lrs: np.ndarray, data: _Data):
        self.n = len(models)
        self.data = data
        self.base_model = models[0]
        self.names = [name for name, _ in models[0].named_parameters()]
        # rows of equal learning rate are contiguous (grid order); one parameter group each
        starts = np.flatnonzero(np.r_[True, lrs[1:] != lrs[:-1]])
        bounds = [*starts.tolist(), self.n]
        groups = []
        for lo, hi in itertools.pairwise(bounds):
            params = [torch.stack([dict(m.named_parameters())[name].detach()
                                   for m in models[lo:hi]]).requires_grad_()
                      for name in self.names]
            groups.append({"params": params, "lr": float(lrs[lo])})
        self.sizes = [hi - lo for lo, hi in itertools.pairwise(bounds)]
        self.opt = torch_optimizer(spec, groups, float(lrs[0]))
        self.base = [float(g["lr"]) for g in groups]  # type: ignore[arg-type]

        def loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 ) -> torch.Tensor:
            return F.cross_entropy(torch.func.functional_call(self.base_model, params, (x,)), y)

        def loss_sum(params: dict[str, torch.Tensor], x: torch.Tensor,
                     y: torch.Tensor) -> torch.Tensor:
            logits = torch.func.functional_call(self.base_model, params, (x,))
            return F.cross_entropy(logits, y, reduction="sum")

        def correct(params: dict[str, torch.Tensor], x: torch.Tensor,
                    y: torch.Tensor) -> torch.Tensor:
            logits = torch.func.functional_call(self.base_model, params, (x,))
            return (logits.argmax(1) == y).sum()

        self._grad = torch.func.vmap(torch.func.grad(loss))
        self._eval_grad = torch.func.vmap(torch.func.grad(loss_sum), in_dims=(0, None, None))
        self._loss_sum = torch.func.vmap(loss_sum, in_dims=(0, None, None))
        self._correct = torch.func.vmap(correct, in_dims=(0, None, None))

    def _stacked(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {name: torch.cat([g["params"][k] for g in self.opt.param_groups])
                    for k, name in enumerate(self.names)}

    def step(self, index: torch.Tensor, lr_factor: float) -> None:
        _set_lr(self.opt, self.base, lr_factor)
        index = index.to(self.data.x.device)
        grads = self._grad(self._stacked(), self.data.x[index], self.data.y[index])
        for k, name in enumerate(self.names):
            for g, part in zip(self.opt.param_groups, grads[name].split(self.sizes),
                               strict=True):
                g["params"][k].grad = part
        self.opt.step()

    def evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.data
        params = self._stacked()
        with torch.no_grad():
            loss = torch.stack([self._loss_sum(params, d.x_eval[i:i + EVAL_BLOCK],
                                               d.y_eval[i:i + EVAL_BLOCK])
                                for i in range(0, d.x_eval.shape[0], EVAL_BLOCK)]).sum(0)
            correct = torch.stack([self._correct(params, d.x_test[i:i + EVAL_BLOCK],
                                                 d.y_test[i:i + EVAL_BLOCK])
                                   for i in range(0, d.x_test.shape[0], EVAL_BLOCK)]).sum(0)
            finite = torch.stack([torch.isfinite(p).flatten(1).all(1) for p in params.values()])
            packed = torch.stack([loss.to(torch.float64), correct.to(torch.float64),
                                  finite.all(0).to(torch.float64)]).cpu().numpy()
        return (packed[0] / d.x_eval.shape[0], packed[1] / d.x_test.shape[0], packed[2] > 0)

    def grad_norm(self, rows: np.ndarray) -> np.ndarray:
        d = self.data
        index = torch.as_tensor(rows, device=d.x.device)
        params = {k: p[index] for k, p in self._stacked().items()}
        sums = [torch.zeros_like(p) for p in params.values()]
        for i in range(0, d.x_eval.shape[0], EVAL_BLOCK):
            grads = self._eval_grad(params, d.x_eval[i:i + EVAL_BLOCK], d.y_eval[i:i + EVAL_BLOCK])
            for s, name in zip(sums, params, strict=True):
                s.add_(grads[name])
        square = torch.stack([(s.flatten(1) ** 2).sum(1) for s in sums]).sum(0)
        return (square.sqrt() / d.x_eval.shape[0]).cpu().numpy()

    def keep(self, rows: np.ndarray) -> None:
        """Cut parameters and optimizer state down to the runs at positions ``rows``."""
        offsets = np.cumsum([0, *self.sizes])
        groups, base, sizes = [], [], []
        for j, g in enumerate(self.opt.param_groups):
            local = rows[(rows >= offsets[j]) & (rows < offsets[j + 1])] - offsets[j]
            old = self.sizes[j]
            if local.size == 0:
                for p in g["params"]:
                    self.opt.state.pop(p, None)
                continue
            index = torch.as_tensor(local, device=g["params"][0].device)
            new_params = []
            for p in g["params"]:
                q = p.detach()[index].clone().requires_grad_()
                state = self.opt.state.pop(p, None)
                if state is not None:
                    self.opt.state[q] = {
                        k: s[index].clone() if (torch.is_tensor(s) and s.dim() > 0
                                                and s.shape[0] == old) else s
                        for k, s in state.items()}
                new_params.append(q)
            g["params"] = new_params
            groups.append(g)
            base.append(self.base[j])
            sizes.append(int(local.size))
        self.opt.param_groups = groups
        self.base, self.sizes, self.n = base, sizes, int(rows.size)


# ---------------------------------------------------------------------------------------------
# The sweep


def _factor(rule: Rule, t: int, sfo: int, n: int) -> float:
    if rule.kind == "constant":
        return 1.0
    return rule.factor(float(t) if rule.unit == "step" else sfo / n)


@dataclass
class _Out:
    columns: dict[str, np.ndarray]
    accuracy: np.ndarray
    trajectories: list[list[float]] | None = field(default=None)


def _run_group(problem: NetworkProblem, data: _Data, spec: Optimizer, schedule: Schedule,
               target: NetworkTarget, b0: int, lrs: np.ndarray, replicates: np.ndarray,
               sweep_seed: int, stacked: bool, device: torch.device, dtype: torch.dtype,
               rows: np.ndarray, out: _Out) -> None:
    """Train the runs ``rows`` (one batch size; learning rates ``lrs``) to their stops."""
    start = time.perf_counter()
    n = problem.n_samples
    models, samplers = [], []
    for replicate in replicates:
        init_seed, data_seed = replicate_seeds(sweep_seed, int(replicate))
        models.append(build_model(problem, init_seed).to(device=device, dtype=dtype))
        samplers.append(_Sampler(n, problem.sampling, data_seed))
    engine: _Engine = (_StackedEngine(models, spec, lrs, data) if stacked
                       else _ModuleEngine(models[0], spec, float(lrs[0]), data))
    cap = float(n) if problem.sampling == "shuffle" else math.inf
    if schedule.max_batch_size is not None:
        cap = min(cap, schedule.max_batch_size)
    loss_below = -math.inf if target.loss_below is None else target.loss_below
    accuracy_above = math.inf if target.accuracy_above is None else target.accuracy_above
    active = np.arange(rows.size)
    blow_up = np.zeros(rows.size)
    cols = out.columns
    t = sfo = 0
    while True:
        if t % target.check_every == 0 or t == target.max_steps:
            loss, accuracy, finite = engine.evaluate()
            if out.trajectories is not None:
                for k, a in enumerate(active):
                    out.trajectories[rows[a]].append(float(loss[k]))
            with np.errstate(invalid="ignore", over="ignore"):
                if t == 0:
                    blow_up[:] = target.divergence_factor * np.maximum(np.abs(loss), 1.0)
                nonfinite = ~np.isfinite(loss) | ~finite
                blowup = ~nonfinite & (loss > blow_up[active])
                diverged = nonfinite | blowup
                reached = ~diverged & ((loss <= loss_below) | (accuracy >= accuracy_above))
            stop = diverged | reached | (t == target.max_steps)
            if stop.any():
                where = rows[active[stop]]
                grad_norm = np.full(active.size, np.nan)
                healthy = np.flatnonzero(stop & ~diverged)
                if healthy.size:
                    grad_norm[healthy] = engine.grad_norm(healthy)
                # A stop with a non-finite gradient norm is divergence, as in the core.
                nonfinite |= stop & ~diverged & ~np.isfinite(grad_norm)
                reached &= ~nonfinite
                diverged |= nonfinite
                cols["steps"][where] = t
                cols["sfo"][where] = sfo
                cols["reached"][where] = reached[stop]
                cols["diverged"][where] = diverged[stop]
                cols["stop_reason"][where] = stop_reasons(reached, nonfinite, blowup)[stop]
                cols["final_loss"][where] = loss[stop]
                cols["final_grad_norm"][where] = grad_norm[stop]
                cols["wall_time"][where] = time.perf_counter() - start
                out.accuracy[where] = accuracy[stop]
                keep = np.flatnonzero(~stop)
                if keep.size == 0:
                    return
                engine.keep(keep)
                active = active[keep]
        scaled = b0 * _factor(schedule.batch, t, sfo, n)
        batch = max(1, int(min(math.ceil(scaled) if math.isfinite(scaled) else math.inf, cap)))
        index = torch.stack([samplers[a].next(batch) for a in active])
        engine.step(index, _factor(schedule.lr, t, sfo, n))
        sfo += batch
        t += 1


def _device(device: Any) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be a torch device, got {device!r}") from error
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA device")
    return dev


def _stackable(problem: NetworkProblem, vectorize: Any, runs: int) -> bool:
    if vectorize is False:
        return False
    has_buffers = any(True for _ in build_model(problem, 0).buffers())
    if vectorize == "auto":
        return problem.model == "mlp" and not has_buffers and runs >= AUTO_MIN_RUNS
    if has_buffers:
        raise ValueError(f"vectorize=True needs a model without buffers; {problem.name!r} has "
                         "some (BatchNorm statistics): use vectorize=False")
    return True


def train_sweep(
    problems: Any, optimizers: Any, batch_sizes: Any, learning_rates: Any, seeds: Any,
    target: Any, *, schedules: Any = None, seed: int = 0, device: Any = "cpu",
    dtype: str = "float32", vectorize: Any = "auto", trajectories: bool = False,
    threads: int | None = None,
) -> Results:
    """Train every run of the grid to its target and return the result table.

    Args:
        problems: one :class:`NetworkProblem` or a list.
        optimizers: one optimizer spec or name (:mod:`critbatch.optimizers`), or a list.
        batch_sizes: base batch sizes (positive integers; at most ``n_train`` with
            ``sampling="shuffle"``).
        learning_rates: base learning rates (positive).
        seeds: a number of replicates, or a list of replicate ids (non-negative integers).
        target: a :class:`NetworkTarget` (or a :class:`critbatch.targets.Target` with
            ``loss_below`` only).
        schedules: one :class:`critbatch.schedules.Schedule` or a list (constant by default).
        seed: the sweep seed (with a replicate id it fixes the weights and the minibatches).
        device: ``"cpu"``, ``"cuda"`` or any torch device.
        dtype: ``"float32"`` (default) or ``"float64"``.
        vectorize: ``"auto"`` (stacked under vmap for ``mlp``, loops otherwise), True or False;
            see the module docstring.
        trajectories: record the training loss at every check (``Results.trajectories``,
            ``specs["trajectory_every"] = check_every``).
        threads: torch's intra-op CPU threads during the call (default: leave torch's
            setting); on a loaded machine one thread is often several times faster for these
            small models.

    Returns:
        A :class:`critbatch.results.Results` with :data:`critbatch.results.COLUMNS`, one row per
        run in grid order; ``specs`` holds the specs and ``"final_test_accuracy"``.

    Raises:
        ValueError: naming the bad argument.

    Example:
        >>> p = network_problem("mlp", "digits", model_kwargs={"hidden": ()})
        >>> res = train_sweep(p, "sgd", [16, 64], [0.5], [0],
        ...                   network_target(loss_below=1.0, check_every=5, max_steps=300))
        >>> res["steps"].tolist() == sorted(res["steps"].tolist(), reverse=True)
        True

    """
    probs, opts, scheds, b, lr, replicates = grid_axes(
        problems, (NetworkProblem,), optimizers, batch_sizes, learning_rates, seeds, schedules)
    goal = _as_target(target)
    check_batch_bounds(probs, scheds, b, goal.max_steps, samples="training examples")
    sweep_seed = v.nonnegative_int("seed", seed)
    dev = _device(device)
    torch_dtype = DTYPES[v.choice("dtype", dtype, tuple(DTYPES))]
    if not (vectorize is True or vectorize is False
            or (isinstance(vectorize, str) and vectorize == "auto")):
        raise ValueError(f"vectorize must be 'auto', True or False, got {vectorize!r}")
    if not isinstance(trajectories, bool):
        raise TypeError(f"trajectories must be a bool, got {trajectories!r}")
    if threads is not None:
        threads = v.threads("threads", threads)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train_sweep(probs, opts, scheds, goal, b, lr, replicates, sweep_seed, dev,
                            torch_dtype, dtype, vectorize, trajectories)
    finally:
        torch.set_num_threads(previous_threads)


def _train_sweep(probs: list[NetworkProblem], opts: list[Optimizer], scheds: list[Schedule],
                 goal: NetworkTarget, b: np.ndarray, lr: np.ndarray, replicates: np.ndarray,
                 sweep_seed: int, dev: torch.device, torch_dtype: torch.dtype, dtype: str,
                 vectorize: Any, trajectories: bool) -> Results:
    grids = np.meshgrid(np.arange(len(probs)), np.arange(len(opts)), np.arange(len(scheds)),
                        np.arange(b.size), np.arange(lr.size), np.arange(replicates.size),
                        indexing="ij")
    pi, oi, si, bi, li, di = (g.ravel() for g in grids)
    total = pi.size
    cols: dict[str, np.ndarray] = {
        "run_index": np.arange(total, dtype=np.uint64),
        "problem": np.asarray([p.name for p in probs], dtype=object)[pi],
        "optimizer": np.asarray([o.name for o in opts], dtype=object)[oi],
        "schedule": np.asarray([s.name for s in scheds], dtype=object)[si],
        "batch_size": b[bi],
        "learning_rate": lr[li],
        "seed": replicates[di],
        "steps": np.zeros(total, dtype=np.int64),
        "sfo": np.zeros(total, dtype=np.int64),
        "reached": np.zeros(total, dtype=bool),
        "diverged": np.zeros(total, dtype=bool),
        "stop_reason": np.full(total, "budget", dtype=object),
        "final_loss": np.full(total, np.nan),
        "final_grad_norm": np.full(total, np.nan),
        "final_x0": np.full(total, np.nan),
        "wall_time": np.zeros(total),
    }
    out = _Out(cols, np.full(total, np.nan), [[] for _ in range(total)] if trajectories else None)
    per_cell = lr.size * replicates.size
    for p_index, problem in enumerate(probs):
        data = _device_data(problem, dev, torch_dtype)
        stacked = _stackable(problem, vectorize, lr.size * replicates.size)
        for cell in range(total // per_cell):
            rows = np.arange(cell * per_cell, (cell + 1) * per_cell)
            if pi[rows[0]] != p_index:
                continue
            spec, schedule = opts[oi[rows[0]]], scheds[si[rows[0]]]
            groups = [rows] if stacked else [rows[k:k + 1] for k in range(rows.size)]
            for group in groups:
                _run_group(problem, data, spec, schedule, goal, int(b[bi[group[0]]]),
                           lr[li[group]], replicates[di[group]], sweep_seed, stacked, dev,
                           torch_dtype, group, out)
    specs: dict[str, Any] = {
        "seed": sweep_seed, "target": goal,
        "optimizers": {o.name: o for o in opts},
        "schedules": {s.name: s for s in scheds},
        "problems": {p.name: p for p in probs},
        "final_test_accuracy": out.accuracy,
        "device": str(dev), "dtype": dtype,
    }
    traj = [np.asarray(t) for t in out.trajectories] if out.trajectories is not None else []
    if trajectories:
        specs["trajectory_every"] = goal.check_every
    return Results({c: cols[c] for c in COLUMNS}, traj, specs)


# ---------------------------------------------------------------------------------------------
# K(b) and N(b) for one problem and several optimizers


DEFAULT_LEARNING_RATES = {
    "sgd": (0.03, 0.1, 0.3, 1.0, 3.0),
    "heavy_ball": (0.003, 0.01, 0.03, 0.1, 0.3),
    "nesterov": (0.003, 0.01, 0.03, 0.1, 0.3),
    "adam": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    "rmsprop": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
}


@dataclass(frozen=True, eq=False)
class BatchSizeSweep:
    """The runs of a batch-size sweep and K(b), N(b) at the best learning rate per batch size.

    Attributes:
        results: every run (a :class:`critbatch.results.Results`).
        table: one row per (optimizer, batch size): ``learning_rate`` (the best),
            ``steps`` (K(b), median over seeds), ``sfo`` (N(b)), ``all_reached``,
            ``lr_at_edge`` (the best learning rate is at the end of the grid) and
            ``wall_time`` (median seconds per run at that learning rate), from
            :func:`critbatch.tuning.best_learning_rate`.

    """

    results: Results
    table: Any


def batch_size_sweep(
    problem: NetworkProblem | None = None,
    optimizers: Sequence[Any] = ("sgd", "heavy_ball", "adam"),
    batch_sizes: Sequence[int] = (8, 16, 32, 64, 128, 256, 512),
    learning_rates: Any = None,
    seeds: Any = 3,
    target: Any = None,
    *, seed: int = 0, device: Any = "cpu", dtype: str = "float32", vectorize: Any = "auto",
    threads: int | None = None,
) -> BatchSizeSweep:
    """Sweep batch sizes and learning rates; return K(b) and N(b) at the best learning rate.

    The best learning rate at each (optimizer, batch size) is the one with the fewest median
    steps among those whose runs all reached the target (:func:`critbatch.tuning.best_learning_rate`
    states the rule and its fallback).

    Args:
        problem: the problem (default: ``cnn1d`` on MNIST-1D, 4,000 training signals).
        optimizers: optimizer specs or names.
        batch_sizes: the batch sizes.
        learning_rates: one grid for all optimizers, or a dict from optimizer name to its grid
            (default :data:`DEFAULT_LEARNING_RATES` by kind).
        seeds: replicates per (batch size, learning rate).
        target: default: training loss ``<= 0.5``, checked every 10 steps, 3,000 steps.
        seed: the sweep seed.
        device: the torch device.
        dtype: ``"float32"`` or ``"float64"``.
        vectorize: as in :func:`train_sweep`.
        threads: as in :func:`train_sweep`.

    Returns:
        A :class:`BatchSizeSweep`.

    Example:
        >>> p = network_problem("mlp", "digits", model_kwargs={"hidden": ()})
        >>> out = batch_size_sweep(p, ["sgd"], [16, 64], {"sgd": [0.3, 1.0]}, 1,
        ...                        network_target(loss_below=1.0, check_every=5, max_steps=300))
        >>> out.table[["batch_size", "all_reached"]].to_dict("list")
        {'batch_size': [16, 64], 'all_reached': [True, True]}

    """
    from critbatch.tuning import best_learning_rate

    if problem is None:
        problem = network_problem("cnn1d", "mnist1d")
    if target is None:
        target = network_target(loss_below=0.5, check_every=10, max_steps=3000)
    specs = [from_name(o) if isinstance(o, str) else o for o in as_list("optimizers", optimizers)]
    parts = []
    for spec in specs:
        if not isinstance(spec, Optimizer):
            raise TypeError(f"optimizers must hold Optimizer specs or names, got "
                            f"{type(spec).__name__}")
        if learning_rates is None:
            grid = DEFAULT_LEARNING_RATES[spec.kind]
        elif isinstance(learning_rates, dict):
            if spec.name not in learning_rates:
                raise ValueError(f"learning_rates has no grid for optimizer {spec.name!r} "
                                 f"(keys: {sorted(learning_rates)})")
            grid = learning_rates[spec.name]
        else:
            grid = learning_rates
        parts.append(train_sweep(problem, spec, batch_sizes, grid, seeds, target, seed=seed,
                                 device=device, dtype=dtype, vectorize=vectorize,
                                 threads=threads))
    results = Results.concat(parts)
    results.columns["run_index"] = np.arange(len(results), dtype=np.uint64)
    results.specs["optimizers"] = {s.name: s for s in specs}
    results.specs["final_test_accuracy"] = np.concatenate(
        [p.specs["final_test_accuracy"] for p in parts])
    frame = results.to_pandas()
    table = best_learning_rate(frame)
    times = frame.groupby(["optimizer", "batch_size", "learning_rate"])["wall_time"].median()
    table["wall_time"] = [times[(o, b, lr)] for o, b, lr in
                          zip(table["optimizer"], table["batch_size"], table["learning_rate"],
                              strict=True)]
    return BatchSizeSweep(results, table)
