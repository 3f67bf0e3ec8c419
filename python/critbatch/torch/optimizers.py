r"""The step rules of :mod:`critbatch.optimizers` as batched tensor updates (one row per run).

Each rule is a small object built from a spec: :meth:`StepRule.init` returns a zeroed state
(a dict of ``(R, dim)`` tensors), and :meth:`StepRule.step` updates the iterate and the state in
place from the gradient, a per-run learning rate (``(R, 1)``) and the step count ``t >= 1``,
which all runs of a chunk share because they start together. The updates follow
``torch.optim`` (``SGD``, ``Adam``, ``RMSprop``) with gradient :math:`g_t`:

* ``sgd``: :math:`x \leftarrow x - \eta g_t`.
* ``heavy_ball``: :math:`m_1 = g_1`, :math:`m_t = \mu m_{t-1} + (1-\tau) g_t`,
  :math:`x \leftarrow x - \eta m_t` (Polyak 1964; ``torch.optim.SGD(momentum, dampening)``).
* ``nesterov``: the same buffer with :math:`\tau = 0` and step
  :math:`x \leftarrow x - \eta (g_t + \mu m_t)` (Sutskever et al. 2013 in torch's form).
* ``adam``: :math:`m_t = \beta_1 m + (1-\beta_1) g`, :math:`v_t = \beta_2 v + (1-\beta_2) g^2`,
  :math:`x \leftarrow x - \frac{\eta}{1-\beta_1^t} m_t / (\sqrt{\hat v_t}/\sqrt{1-\beta_2^t}
  + \epsilon)`, :math:`\hat v_t = v_t`, or :math:`\max_{s \le t} v_s` with ``amsgrad``
  (Kingma & Ba 2015, Alg. 1, arXiv:1412.6980; Reddi et al. 2018).
* ``rmsprop``: :math:`v_t = \alpha v + (1-\alpha) g^2`; centred, :math:`\bar g_t = \alpha
  \bar g + (1-\alpha) g` and :math:`v_t - \bar g_t^2` in the root;
  :math:`u = g / (\sqrt{\cdot} + \epsilon)`; with momentum :math:`b_t = \mu b + u`,
  :math:`x \leftarrow x - \eta b_t`, else :math:`x \leftarrow x - \eta u` (Tieleman & Hinton
  2012, lecture 6.5; ``torch.optim.RMSprop``).

* ``adamw``: :math:`x \leftarrow x (1 - \eta \lambda)`, then the ``adam`` step
  (Loshchilov & Hutter 2019, Alg. 2, arXiv:1711.05101; ``torch.optim.AdamW``).
* ``lars``: per layer :math:`B` and run, :math:`d_B = \frac{\eta_{tc} \lVert x_B \rVert}
  {\lVert g_B \rVert + \lambda \lVert x_B \rVert + \epsilon} (g_B + \lambda x_B)` (:math:`g_B`
  when a norm is 0), then ``torch.optim.SGD``'s momentum on :math:`d` (You, Gitman & Ginsburg
  2017, Alg. 1, arXiv:1708.03888, as NVIDIA apex's ``LARC`` with ``clip=False``).
* ``lamb``: :math:`u = \hat m_t / (\sqrt{\hat v_t} + \epsilon) + \lambda x`,
  :math:`x_B \leftarrow x_B - \eta (\lVert x_B \rVert / \lVert u_B \rVert) u_B` (ratio 1 when
  a norm is 0; You et al. 2020, Alg. 2, arXiv:1904.00962).
* ``lion``: :math:`c = \beta_1 m + (1-\beta_1) g`, :math:`x \leftarrow x - \eta (\mathrm{sign}(c)
  + \lambda x)`, :math:`m \leftarrow \beta_2 m + (1-\beta_2) g` (Chen et al. 2023, Alg. 2,
  arXiv:2302.06675).

With ``max_grad_norm``, each run's gradient is first clipped to that norm as
``torch.nn.utils.clip_grad_norm_`` does (:class:`Clipped`). The layers of ``lars`` and ``lamb``
are the sizes :func:`from_spec` receives (a problem's, from
:func:`critbatch.optimizers.layers_for`: a network's parameter tensors, the teacher-student's two
layers), one block by default.

With ``momentum = 0``, ``heavy_ball`` and ``nesterov`` keep no buffer and are plain SGD
whatever the dampening, as in ``torch.optim.SGD``, the Rust core and the NumPy reference.

:meth:`StepRule.preconditioner` gives the diagonal preconditioner :math:`p` of a step, one row
per run, for the rules that divide by a root of a second moment (``adam``, ``adamw``,
``rmsprop``, ``lamb``; ``None`` for the others): :math:`p_i = 1/(\sqrt{\hat v_i} + \epsilon)`
from the state *before* the step, so that :math:`p` does not depend on the step's gradient.
A network measuring its noise scale reads it (:mod:`critbatch.torch.noise_scale`).

Example:
    >>> import torch
    >>> import critbatch as cb
    >>> rule = from_spec(cb.optimizers.heavy_ball(0.5))
    >>> x = torch.zeros(1, 2, dtype=torch.float64)
    >>> state = rule.init(x)
    >>> lr = torch.full((1, 1), 0.1, dtype=torch.float64)
    >>> for t in (1, 2):
    ...     rule.step(x, torch.ones(1, 2, dtype=torch.float64), lr, state, t)
    >>> x.tolist()  # -0.1 * (1) - 0.1 * (0.5 + 1)
    [[-0.25, -0.25]]

"""

from __future__ import annotations

import math

import torch

from critbatch.optimizers import KINDS, Optimizer

State = dict[str, torch.Tensor]


class StepRule:
    """A batched step rule; subclasses implement :meth:`init` and :meth:`step`."""

    def init(self, x: torch.Tensor) -> State:
        """Return a zeroed state for the iterates ``x`` (``R x dim``)."""
        return {}

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        """Update ``x`` and ``state`` in place from gradient ``g`` at step ``t >= 1``."""
        raise NotImplementedError

    def preconditioner(self, state: State, t: int) -> torch.Tensor | None:
        r"""The diagonal preconditioner of step ``t >= 1`` (``R x dim``), or ``None``.

        Read from ``state`` as it is before step ``t`` (after ``t - 1`` steps), so it does not
        depend on step ``t``'s gradient. ``None`` for a rule without a second moment (SGD,
        momentum, LARS, Lion) and at ``t = 1``, where the second moment holds no gradient yet.
        """
        return None


class Sgd(StepRule):
    r""":math:`x \leftarrow x - \eta g`."""

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        """One SGD step."""
        x.sub_(lr * g)


class HeavyBall(StepRule):
    """Heavy ball, optionally Nesterov (``torch.optim.SGD`` with ``momentum``)."""

    def __init__(self, momentum: float, dampening: float, nesterov: bool):
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov

    def init(self, x: torch.Tensor) -> State:
        """Return the momentum buffer, zero."""
        return {"buf": torch.zeros_like(x)}

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        r""":math:`m_t = \mu m_{t-1} + (1-\tau) g_t` (:math:`m_1 = g_1`), then the step."""
        if self.momentum == 0.0:
            # torch keeps no buffer without momentum, so the dampening has no effect.
            x.sub_(lr * g)
            return
        buf = state["buf"]
        if t == 1:
            buf.copy_(g)
        else:
            buf.mul_(self.momentum).add_(g, alpha=1.0 - self.dampening)
        direction = g + self.momentum * buf if self.nesterov else buf
        x.sub_(lr * direction)


class Adam(StepRule):
    """Adam with bias correction, AMSGrad as a flag (``torch.optim.Adam``)."""

    def __init__(self, beta1: float, beta2: float, eps: float, amsgrad: bool):
        self.beta1, self.beta2, self.eps, self.amsgrad = beta1, beta2, eps, amsgrad

    def init(self, x: torch.Tensor) -> State:
        """First and second moments (and their running maximum with AMSGrad), zero."""
        state = {"m": torch.zeros_like(x), "v": torch.zeros_like(x)}
        if self.amsgrad:
            state["v_max"] = torch.zeros_like(x)
        return state

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        """Moments, bias corrections at step ``t``, then the step."""
        m, v = state["m"], state["v"]
        m.mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        if self.amsgrad:
            torch.maximum(state["v_max"], v, out=state["v_max"])
            v = state["v_max"]
        correction1 = 1.0 - self.beta1**t
        root_correction2 = math.sqrt(1.0 - self.beta2**t)
        denom = v.sqrt() / root_correction2 + self.eps
        x.sub_((lr / correction1) * (m / denom))

    def preconditioner(self, state: State, t: int) -> torch.Tensor | None:
        r""":math:`1/(\sqrt{\hat v_{t-1}} + \epsilon)` before step ``t``; ``None`` at ``t = 1``.

        :math:`\hat v_{t-1} = v_{t-1}/(1-\beta_2^{t-1})`, the bias correction of the step's
        denominator; :math:`v` is the running maximum with AMSGrad.
        """
        if t <= 1:
            return None
        v = state["v_max"] if self.amsgrad else state["v"]
        root_correction2 = math.sqrt(1.0 - self.beta2 ** (t - 1))
        return 1.0 / (v.sqrt() / root_correction2 + self.eps)


class RmsProp(StepRule):
    """RMSProp, optionally centred and with momentum (``torch.optim.RMSprop``)."""

    def __init__(self, alpha: float, eps: float, momentum: float, centered: bool):
        self.alpha, self.eps, self.momentum, self.centered = alpha, eps, momentum, centered

    def init(self, x: torch.Tensor) -> State:
        """Square average (and mean gradient, momentum buffer when used), zero."""
        state = {"v": torch.zeros_like(x)}
        if self.centered:
            state["g_mean"] = torch.zeros_like(x)
        if self.momentum > 0:
            state["buf"] = torch.zeros_like(x)
        return state

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        """Square average, normalized gradient, optional momentum, then the step."""
        v = state["v"]
        v.mul_(self.alpha).addcmul_(g, g, value=1.0 - self.alpha)
        if self.centered:
            g_mean = state["g_mean"]
            g_mean.mul_(self.alpha).add_(g, alpha=1.0 - self.alpha)
            root = (v - g_mean * g_mean).sqrt()
        else:
            root = v.sqrt()
        u = g / (root + self.eps)
        if self.momentum > 0:
            buf = state["buf"]
            buf.mul_(self.momentum).add_(u)
            u = buf
        x.sub_(lr * u)

    def preconditioner(self, state: State, t: int) -> torch.Tensor | None:
        r""":math:`1/(\sqrt{v_{t-1}} + \epsilon)` (centred: :math:`v - \bar g^2` in the root).

        ``None`` at ``t = 1``.
        """
        if t <= 1:
            return None
        v = state["v"]
        if self.centered:
            g_mean = state["g_mean"]
            return 1.0 / ((v - g_mean * g_mean).sqrt() + self.eps)
        return 1.0 / (v.sqrt() + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``)."""

    def __init__(self, beta1: float, beta2: float, eps: float, weight_decay: float, amsgrad: bool):
        super().__init__(beta1, beta2, eps, amsgrad)
        self.weight_decay = weight_decay

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        r""":math:`x \leftarrow x (1 - \eta \lambda)`, then the Adam step."""
        x.mul_(1.0 - lr * self.weight_decay)
        super().step(x, g, lr, state, t)


def _blocks(layers: tuple[int, ...] | None) -> list[slice]:
    if layers is None:
        return [slice(None)]  # one block: the whole row
    out, start = [], 0
    for size in layers:
        out.append(slice(start, start + size))
        start += size
    return out


def _row_norm(a: torch.Tensor) -> torch.Tensor:
    norm: torch.Tensor = torch.linalg.vector_norm(a, dim=1, keepdim=True)  # linalg is untyped
    return norm


class Lars(StepRule):
    """LARS as apex's ``LARC`` (``clip=False``) around ``torch.optim.SGD(momentum)``."""

    def __init__(
        self,
        momentum: float,
        trust_coefficient: float,
        weight_decay: float,
        eps: float,
        layers: tuple[int, ...] | None,
    ):
        self.momentum, self.trust_coefficient = momentum, trust_coefficient
        self.weight_decay, self.eps, self.blocks = weight_decay, eps, _blocks(layers)

    def init(self, x: torch.Tensor) -> State:
        """The momentum buffer (when ``momentum > 0``), zero."""
        return {"buf": torch.zeros_like(x)} if self.momentum > 0 else {}

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        """Layer-wise trust ratios of each run, then SGD with momentum on the scaled gradient."""
        wd = self.weight_decay
        d = g.clone()
        for block in self.blocks:
            xb, gb = x[:, block], g[:, block]
            x_norm, g_norm = _row_norm(xb), _row_norm(gb)
            ratio = self.trust_coefficient * x_norm / (g_norm + wd * x_norm + self.eps)
            d[:, block] = torch.where((x_norm > 0) & (g_norm > 0), ratio * (gb + wd * xb), gb)
        if self.momentum > 0:
            buf = state["buf"]
            if t == 1:
                buf.copy_(d)
            else:
                buf.mul_(self.momentum).add_(d)
            d = buf
        x.sub_(lr * d)


class Lamb(StepRule):
    """LAMB (You et al. 2020, Alg. 2): Adam's step, decayed, with layer-wise trust ratios."""

    def __init__(
        self,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        layers: tuple[int, ...] | None,
    ):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay, self.blocks = weight_decay, _blocks(layers)

    def init(self, x: torch.Tensor) -> State:
        """First and second moments, zero."""
        return {"m": torch.zeros_like(x), "v": torch.zeros_like(x)}

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        """Moments, the decayed Adam direction, then one trust ratio per layer and run."""
        m, v = state["m"], state["v"]
        m.mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        m_hat = m / (1.0 - self.beta1**t)
        v_hat = v / (1.0 - self.beta2**t)
        u = m_hat / (v_hat.sqrt() + self.eps) + self.weight_decay * x
        for block in self.blocks:
            x_norm, u_norm = _row_norm(x[:, block]), _row_norm(u[:, block])
            ok = (x_norm > 0) & (u_norm > 0)
            ratio = torch.where(ok, x_norm / torch.where(ok, u_norm, 1.0), 1.0)
            x[:, block] -= lr * ratio * u[:, block]

    def preconditioner(self, state: State, t: int) -> torch.Tensor | None:
        r""":math:`1/(\sqrt{\hat v_{t-1}} + \epsilon)`, as :class:`Adam`'s; ``None`` at ``t = 1``.

        The trust ratios are left out: they depend on the step's own gradient.
        """
        if t <= 1:
            return None
        v_hat = state["v"] / (1.0 - self.beta2 ** (t - 1))
        return 1.0 / (v_hat.sqrt() + self.eps)


class Lion(StepRule):
    """Lion (Chen et al. 2023, Alg. 2)."""

    def __init__(self, beta1: float, beta2: float, weight_decay: float):
        self.beta1, self.beta2, self.weight_decay = beta1, beta2, weight_decay

    def init(self, x: torch.Tensor) -> State:
        """The momentum, zero."""
        return {"m": torch.zeros_like(x)}

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        r"""Sign of the interpolated momentum plus decay, then the momentum update."""
        m = state["m"]
        c = self.beta1 * m + (1.0 - self.beta1) * g
        x.sub_(lr * (c.sign() + self.weight_decay * x))
        m.mul_(self.beta2).add_(g, alpha=1.0 - self.beta2)


class Clipped(StepRule):
    """A rule fed each run's gradient clipped as ``torch.nn.utils.clip_grad_norm_``."""

    def __init__(self, max_grad_norm: float, rule: StepRule):
        self.max_grad_norm, self.rule = max_grad_norm, rule

    def init(self, x: torch.Tensor) -> State:
        """The wrapped rule's state."""
        return self.rule.init(x)

    def step(
        self, x: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: State, t: int
    ) -> None:
        r""":math:`g \leftarrow g \min(1, c / (\lVert g \rVert + 10^{-6}))`, then the rule."""
        coef = (self.max_grad_norm / (_row_norm(g) + 1e-6)).clamp(max=1.0)
        self.rule.step(x, g * coef, lr, state, t)

    def preconditioner(self, state: State, t: int) -> torch.Tensor | None:
        """The wrapped rule's (the clipping factor depends on the step's gradient: left out)."""
        return self.rule.preconditioner(state, t)


def from_spec(spec: Optimizer, layers: tuple[int, ...] | None = None) -> StepRule:
    """Return the batched step rule of an optimizer spec.

    Args:
        spec: an :class:`critbatch.optimizers.Optimizer` (``kind`` one of ``KINDS``).
        layers: the layer sizes of the problem (``lars``, ``lamb``; the spec's own ``layers``
            take precedence; default one block, the whole row).

    Returns:
        The :class:`StepRule` with the spec's hyperparameters.

    Example:
        >>> import critbatch as cb
        >>> type(from_spec(cb.optimizers.adam())).__name__
        'Adam'

    """
    if not isinstance(spec, Optimizer):
        raise TypeError(f"optimizer must be a critbatch Optimizer, got {type(spec).__name__}")
    rule = _rule(spec, spec.layers or layers)
    return rule if spec.max_grad_norm is None else Clipped(spec.max_grad_norm, rule)


def _rule(spec: Optimizer, layers: tuple[int, ...] | None) -> StepRule:
    if spec.kind == "sgd":
        return Sgd()
    if spec.kind == "heavy_ball":
        return HeavyBall(spec.momentum, spec.dampening, nesterov=False)
    if spec.kind == "nesterov":
        return HeavyBall(spec.momentum, 0.0, nesterov=True)
    if spec.kind == "adam":
        return Adam(spec.betas[0], spec.betas[1], spec.eps, spec.amsgrad)
    if spec.kind == "rmsprop":
        return RmsProp(spec.alpha, spec.eps, spec.momentum, spec.centered)
    if spec.kind == "adamw":
        return AdamW(spec.betas[0], spec.betas[1], spec.eps, spec.weight_decay, spec.amsgrad)
    if spec.kind == "lars":
        return Lars(spec.momentum, spec.trust_coefficient, spec.weight_decay, spec.eps, layers)
    if spec.kind == "lamb":
        return Lamb(spec.betas[0], spec.betas[1], spec.eps, spec.weight_decay, layers)
    if spec.kind == "lion":
        return Lion(spec.betas[0], spec.betas[1], spec.weight_decay)
    raise ValueError(f"optimizer.kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
