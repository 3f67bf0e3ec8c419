r"""The optimizers' update rules, written plainly as the papers' recurrences (NumPy oracle).

Each rule follows ``torch.optim`` (``maximize=False``) and the spec module
:mod:`critbatch.optimizers`; the hyperparameter names are torch's. With gradient :math:`g_t`,
learning rate :math:`\eta_t`, iterate :math:`x_t` and step count :math:`t = 1, 2, \dots`:

* ``sgd``: :math:`x_{t+1} = x_t - \eta_t g_t`.
* ``heavy_ball`` (``torch.optim.SGD(momentum=mu, dampening=tau)``): :math:`m_1 = g_1`,
  :math:`m_t = \mu m_{t-1} + (1 - \tau) g_t`, :math:`x_{t+1} = x_t - \eta_t m_t`. As in torch,
  ``momentum == 0`` keeps no buffer, so it is plain SGD whatever the dampening.
* ``nesterov`` (``torch.optim.SGD(momentum=mu, nesterov=True)``): the same buffer with
  :math:`\tau = 0`, and :math:`x_{t+1} = x_t - \eta_t (g_t + \mu m_t)`.
* ``adam`` (``torch.optim.Adam``; Kingma & Ba 2015, Alg. 1; AMSGrad: Reddi et al. 2018):
  :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`,
  :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2`,
  :math:`\hat v_t = v_t` (or :math:`\max(\hat v_{t-1}, v_t)` with ``amsgrad``),
  :math:`x_{t+1} = x_t - \frac{\eta_t}{1-\beta_1^t}\, m_t /
  (\sqrt{\hat v_t/(1-\beta_2^t)} + \epsilon)`.
* ``rmsprop`` (``torch.optim.RMSprop``; Tieleman & Hinton 2012, lecture 6.5):
  :math:`v_t = \alpha v_{t-1} + (1-\alpha) g_t^2`; centred: :math:`\bar g_t = \alpha \bar g_{t-1}
  + (1-\alpha) g_t` and the denominator uses :math:`v_t - \bar g_t^2`;
  :math:`u_t = g_t / (\sqrt{v_t} + \epsilon)`; with momentum :math:`b_t = \mu b_{t-1} + u_t`,
  :math:`x_{t+1} = x_t - \eta_t b_t` (without: :math:`x_{t+1} = x_t - \eta_t u_t`).

* ``adamw`` (``torch.optim.AdamW``; Loshchilov & Hutter 2019, Alg. 2): :math:`x \leftarrow
  x (1 - \eta_t \lambda)`, then the ``adam`` step.
* ``lars`` (You, Gitman & Ginsburg 2017, Alg. 1, as NVIDIA apex's ``LARC`` with ``clip=False``
  around ``torch.optim.SGD(momentum)``): per layer :math:`B`, when :math:`\lVert x_B \rVert > 0`
  and :math:`\lVert g_B \rVert > 0`, :math:`d_B = \frac{\eta \lVert x_B \rVert}{\lVert g_B
  \rVert + \lambda \lVert x_B \rVert + \epsilon} (g_B + \lambda x_B)`, else :math:`d_B = g_B`;
  :math:`m_1 = d_1`, :math:`m_t = \mu m_{t-1} + d_t`, :math:`x_{t+1} = x_t - \eta_t m_t`
  (:math:`\mu = 0`: :math:`x_{t+1} = x_t - \eta_t d_t`).
* ``lamb`` (You et al. 2020, Alg. 2, :math:`\phi` the identity): the ``adam`` moments,
  :math:`u = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon} + \lambda x_t`,
  per layer :math:`x_B \leftarrow x_B - \eta_t \frac{\lVert x_B \rVert}{\lVert u_B \rVert}
  u_B` (ratio 1 when a norm is 0).
* ``lion`` (Chen et al. 2023, Alg. 2): :math:`c = \beta_1 m + (1-\beta_1) g_t`,
  :math:`x_{t+1} = x_t - \eta_t (\mathrm{sign}(c) + \lambda x_t)`,
  :math:`m \leftarrow \beta_2 m + (1-\beta_2) g_t`.

With ``max_grad_norm`` :math:`c`, every rule first sees :math:`g_t \min(1, c / (\lVert g_t
\rVert + 10^{-6}))` (``torch.nn.utils.clip_grad_norm_``). The layers are the optimizer's own
``layers``, else those passed to :func:`init_state` (a problem's declared layers), else one block.

All buffers start at zero. The state is a plain dict of arrays plus the step count, so a reader can
follow one step by hand; nothing is fused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch.optimizers import KINDS, Optimizer

State = dict[str, Any]


def _check_spec(spec: Any) -> Optimizer:
    if not isinstance(spec, Optimizer):
        raise TypeError(f"spec must be a critbatch.optimizers.Optimizer, got {type(spec).__name__}")
    if spec.kind not in KINDS:
        raise ValueError(f"spec.kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
    return spec


def init_state(spec: Optimizer, dim: int, layers: Any = None) -> State:
    """Return the zero state of ``spec`` for ``dim`` parameters: step count 0, zero buffers.

    Args:
        spec: the optimizer (:mod:`critbatch.optimizers`).
        dim: number of parameters.
        layers: the sizes of the problem's declared layers (default: one block); the spec's own
            ``layers`` take precedence. They must add up to ``dim``.

    Returns:
        A dict with ``"t"`` (steps taken), ``"layers"`` and one zero vector per buffer of the rule.

    Example:
        >>> from critbatch import optimizers
        >>> sorted(init_state(optimizers.adam(), 2))
        ['layers', 'm', 't', 'v', 'v_max']

    """
    _check_spec(spec)
    zeros = np.zeros(v.positive_int("dim", dim))
    if spec.layers is not None:
        layers = spec.layers
    elif layers is None:
        layers = (dim,)
    sizes = tuple(int(n) for n in layers)
    if sum(sizes) != dim or min(sizes) <= 0:
        raise ValueError(f"layers must be positive sizes adding up to {dim}, got {list(sizes)}")
    buffers = {
        "sgd": (),
        "heavy_ball": ("m",),
        "nesterov": ("m",),
        "adam": ("m", "v", "v_max"),
        "adamw": ("m", "v", "v_max"),
        "rmsprop": ("v", "g_avg", "b"),
        "lars": ("m",),
        "lamb": ("m", "v"),
        "lion": ("m",),
    }[spec.kind]
    state: State = {"t": 0, "layers": sizes}
    state.update({name: zeros.copy() for name in buffers})
    return state


def _norm(a: np.ndarray) -> float:
    return float(np.sqrt(np.sum(a * a)))


def _blocks(layers: tuple[int, ...]) -> list[slice]:
    ends = np.cumsum(layers)
    return [slice(int(end - size), int(end)) for size, end in zip(layers, ends, strict=True)]


def clip_grad_norm(g: np.ndarray, max_norm: float) -> np.ndarray:
    r"""Return ``g`` scaled as ``torch.nn.utils.clip_grad_norm_`` scales a single gradient.

    .. math::
        g \leftarrow g \, \min\!\left(1, \frac{c}{\lVert g \rVert + 10^{-6}}\right)

    with ``max_norm`` :math:`c`.

    Example:
        >>> import numpy as np
        >>> clip_grad_norm(np.array([3.0, 4.0]), 1.0).round(6).tolist()
        [0.6, 0.8]

    """
    coef = max_norm / (_norm(g) + 1e-6)
    return g * coef if coef < 1.0 else g


def step(
    spec: Optimizer, state: State, x: np.ndarray, g: np.ndarray, lr: float
) -> tuple[np.ndarray, State]:
    r"""One update :math:`x_t \to x_{t+1}` of ``spec`` (see the module docstring for the rules).

    Args:
        spec: the optimizer.
        state: its state before the step (from :func:`init_state` or a previous step); not modified.
        x: the current iterate, shape ``(d,)``.
        g: the (stochastic) gradient at ``x``, shape ``(d,)``.
        lr: the learning rate :math:`\eta_t` of this step.

    Returns:
        ``(x_next, state_next)``.

    Example:
        >>> import numpy as np
        >>> from critbatch import optimizers
        >>> spec = optimizers.heavy_ball(0.5)
        >>> s = init_state(spec, 1)
        >>> x, s = step(spec, s, np.array([1.0]), np.array([1.0]), 0.1)   # m = 1
        >>> x, s = step(spec, s, x, np.array([1.0]), 0.1)                 # m = 0.5 + 1
        >>> x.round(12).tolist(), s["m"].tolist()
        ([0.75], [1.5])

    References:
        ``torch.optim.SGD``, ``torch.optim.Adam``, ``torch.optim.AdamW``, ``torch.optim.RMSprop``
        (update semantics); Kingma & Ba 2015, Algorithm 1 (arXiv:1412.6980); Reddi et al. 2018
        (AMSGrad); Loshchilov & Hutter 2019 (arXiv:1711.05101); You et al. 2017
        (arXiv:1708.03888) and 2020 (arXiv:1904.00962); Chen et al. 2023 (arXiv:2302.06675).

    """
    spec = _check_spec(spec)
    t = state["t"] + 1
    new: State = {"t": t, "layers": state["layers"]}
    if spec.max_grad_norm is not None:
        g = clip_grad_norm(g, spec.max_grad_norm)
    if spec.kind == "sgd" or (spec.kind == "heavy_ball" and spec.momentum == 0.0):
        # torch.optim.SGD with momentum 0 keeps no buffer and ignores the dampening.
        new.update({k: val for k, val in state.items() if k != "t"})
        return x - lr * g, new
    if spec.kind in ("heavy_ball", "nesterov"):
        mu = spec.momentum
        tau = spec.dampening if spec.kind == "heavy_ball" else 0.0
        m = g.copy() if t == 1 else mu * state["m"] + (1.0 - tau) * g
        new["m"] = m
        direction = m if spec.kind == "heavy_ball" else g + mu * m
        return x - lr * direction, new
    if spec.kind == "adamw":
        # torch.optim.AdamW: decay the iterate, then take the Adam step.
        x = x * (1.0 - lr * spec.weight_decay)
    if spec.kind in ("adam", "adamw"):
        beta1, beta2 = spec.betas
        m = beta1 * state["m"] + (1.0 - beta1) * g
        v = beta2 * state["v"] + (1.0 - beta2) * g * g
        v_max = np.maximum(state["v_max"], v) if spec.amsgrad else state["v_max"]
        v_hat = v_max if spec.amsgrad else v
        bias1 = 1.0 - beta1**t
        bias2 = 1.0 - beta2**t
        new.update(m=m, v=v, v_max=v_max)
        return x - (lr / bias1) * m / (np.sqrt(v_hat / bias2) + spec.eps), new
    if spec.kind == "lars":
        d = g.copy()
        for block in _blocks(state["layers"]):
            x_norm, g_norm = _norm(x[block]), _norm(g[block])
            if x_norm > 0.0 and g_norm > 0.0:
                ratio = (
                    spec.trust_coefficient
                    * x_norm
                    / (g_norm + spec.weight_decay * x_norm + spec.eps)
                )
                d[block] = ratio * (g[block] + spec.weight_decay * x[block])
        if spec.momentum == 0.0:
            new["m"] = state["m"]
            return x - lr * d, new
        m = d if t == 1 else spec.momentum * state["m"] + d
        new["m"] = m
        return x - lr * m, new
    if spec.kind == "lamb":
        beta1, beta2 = spec.betas
        m = beta1 * state["m"] + (1.0 - beta1) * g
        v = beta2 * state["v"] + (1.0 - beta2) * g * g
        m_hat = m / (1.0 - beta1**t)
        v_hat = v / (1.0 - beta2**t)
        u = m_hat / (np.sqrt(v_hat) + spec.eps) + spec.weight_decay * x
        x_next = x.copy()
        for block in _blocks(state["layers"]):
            x_norm, u_norm = _norm(x[block]), _norm(u[block])
            ratio = x_norm / u_norm if x_norm > 0.0 and u_norm > 0.0 else 1.0
            x_next[block] = x[block] - lr * ratio * u[block]
        new.update(m=m, v=v)
        return x_next, new
    if spec.kind == "lion":
        beta1, beta2 = spec.betas
        c = beta1 * state["m"] + (1.0 - beta1) * g
        new["m"] = beta2 * state["m"] + (1.0 - beta2) * g
        return x - lr * (np.sign(c) + spec.weight_decay * x), new
    # rmsprop
    alpha = spec.alpha
    v = alpha * state["v"] + (1.0 - alpha) * g * g
    g_avg = alpha * state["g_avg"] + (1.0 - alpha) * g if spec.centered else state["g_avg"]
    second = v - g_avg * g_avg if spec.centered else v
    u = g / (np.sqrt(second) + spec.eps)
    b = spec.momentum * state["b"] + u if spec.momentum > 0 else state["b"]
    new.update(v=v, g_avg=g_avg, b=b)
    return x - lr * (b if spec.momentum > 0 else u), new


def optimizer_trajectory(
    spec: Optimizer, x0: Any, grads: Any, lrs: Any, layers: Any = None
) -> np.ndarray:
    r"""Return the iterates :math:`x_1, \dots, x_K` of ``spec`` under a fixed gradient sequence.

    .. math::
        (x_{k+1}, s_{k+1}) = \mathrm{step}(x_k, s_k, g_k, \eta_k), \qquad k = 0, \dots, K-1,

    where ``grads[k]`` is :math:`g_k` and ``lrs[k]`` is :math:`\eta_k` (the gradients do not depend
    on the iterates: this checks the update rule alone, step for step).

    Args:
        spec: the optimizer (:mod:`critbatch.optimizers`).
        x0: the start, shape ``(d,)``.
        grads: the gradients, shape ``(K, d)``, all finite.
        lrs: the learning rates, shape ``(K,)``, all finite.
        layers: the declared layer sizes (:func:`init_state`; default one block).

    Returns:
        Array of shape ``(K, d)``; row ``k`` is :math:`x_{k+1}`.

    Example:
        >>> import numpy as np
        >>> from critbatch import optimizers
        >>> optimizer_trajectory(optimizers.sgd(), [1.0], [[1.0], [2.0]], [0.1, 0.2]).tolist()
        [[0.9], [0.5]]

    References:
        The same rules as ``critbatch._core.optimizer_trajectory`` (Rust) and ``torch.optim``.

    """
    spec = _check_spec(spec)
    x = np.array(x0, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x0 must be a non-empty 1-D array, got shape {x.shape}")
    g_all = np.asarray(grads, dtype=np.float64)
    if g_all.ndim != 2 or g_all.shape[1] != x.size:
        raise ValueError(f"grads must have shape (K, {x.size}), got {g_all.shape}")
    lr_all = np.asarray(lrs, dtype=np.float64)
    if lr_all.shape != (g_all.shape[0],):
        raise ValueError(f"lrs must have shape ({g_all.shape[0]},), got {lr_all.shape}")
    for name, arr in (("x0", x), ("grads", g_all), ("lrs", lr_all)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite everywhere")
    state = init_state(spec, x.size, layers)
    out = np.empty_like(g_all)
    for k in range(g_all.shape[0]):
        x, state = step(spec, state, x, g_all[k], float(lr_all[k]))
        out[k] = x
    return out
