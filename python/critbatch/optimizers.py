r"""Optimizers: pure step rules with torch.optim's hyperparameter names and update semantics.

Each spec is a frozen dataclass whose ``kind`` names the Rust variant (``rust/optimizers.rs``).
With gradient :math:`g_t`, learning rate :math:`\eta_t` and iterate :math:`x_t`:

* ``sgd``: :math:`x_{t+1} = x_t - \eta_t g_t`.
* ``heavy_ball``: :math:`m_1 = g_1`, :math:`m_t = \mu m_{t-1} + (1-\tau) g_t`,
  :math:`x_{t+1} = x_t - \eta_t m_t` (``torch.optim.SGD(momentum=mu, dampening=tau)``).
* ``nesterov``: the same buffer, step :math:`x_{t+1} = x_t - \eta_t (g_t + \mu m_t)`
  (``torch.optim.SGD(nesterov=True)``, which requires ``dampening = 0``).
* ``adam``: :math:`m_t = \beta_1 m + (1-\beta_1) g`, :math:`v_t = \beta_2 v + (1-\beta_2) g^2`,
  :math:`x_{t+1} = x_t
  - \frac{\eta_t}{1-\beta_1^t} \, m_t / (\sqrt{\hat v_t / (1-\beta_2^t)} + \epsilon)`
  with :math:`\hat v_t = v_t`, or its running maximum with ``amsgrad`` (Kingma & Ba 2015, Alg. 1;
  Reddi et al. 2018).
* ``rmsprop``: :math:`v_t = \alpha v + (1-\alpha) g^2` (centred: minus the squared running mean
  of :math:`g`), :math:`u = g / (\sqrt{v_t} + \epsilon)`, with momentum :math:`b_t = \mu b + u`,
  :math:`x_{t+1} = x_t - \eta_t b_t` (``torch.optim.RMSprop``).
* ``adamw``: :math:`x \leftarrow x (1 - \eta_t \lambda)`, then the ``adam`` step
  (``torch.optim.AdamW``; Loshchilov & Hutter 2019, Alg. 2, arXiv:1711.05101).
* ``lars``: per layer :math:`B`, :math:`r = \eta_{tc} \lVert x_B \rVert / (\lVert g_B \rVert
  + \lambda \lVert x_B \rVert + \epsilon)` and :math:`d_B = r (g_B + \lambda x_B)` (when a norm
  is 0: :math:`d_B = g_B`), then ``torch.optim.SGD``'s momentum on :math:`d`: :math:`m_1 = d_1`,
  :math:`m_t = \mu m_{t-1} + d_t`, :math:`x_{t+1} = x_t - \eta_t m_t` (You, Gitman & Ginsburg
  2017, Alg. 1, arXiv:1708.03888, in the form of NVIDIA apex's ``LARC`` with ``clip=False``).
* ``lamb``: Adam's moments with bias correction, :math:`u = \hat m_t / (\sqrt{\hat v_t} +
  \epsilon) + \lambda x`, per layer :math:`x_B \leftarrow x_B - \eta_t (\lVert x_B \rVert /
  \lVert u_B \rVert) u_B` (ratio 1 when a norm is 0; You et al. 2020, Alg. 2, arXiv:1904.00962).
* ``lion``: :math:`c = \beta_1 m + (1-\beta_1) g`, :math:`x_{t+1} = x_t - \eta_t
  (\mathrm{sign}(c) + \lambda x_t)`, :math:`m \leftarrow \beta_2 m + (1-\beta_2) g` (Chen et al.
  2023, Alg. 2, arXiv:2302.06675; :math:`\mathrm{sign}(0) = 0`).

Every rule takes ``max_grad_norm``: the gradient is first clipped to that global norm as
``torch.nn.utils.clip_grad_norm_`` does, :math:`g \leftarrow g \min(1, c / (\lVert g \rVert +
10^{-6}))`. The layers of ``lars`` and ``lamb`` are the blocks of coordinates a problem declares
(:func:`declared_layers`: the teacher-student network's ``W`` and ``a``; one block elsewhere),
or the optimizer's own ``layers`` (their sizes, in order), checked against every problem of a
plan (:func:`check_layers`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from critbatch import _validate as v

KINDS = ("sgd", "heavy_ball", "nesterov", "adam", "rmsprop", "adamw", "lars", "lamb", "lion")


@dataclass(frozen=True)
class Optimizer:
    """An optimizer spec: ``kind`` plus its hyperparameters (unused ones stay at their defaults)."""

    kind: str
    name: str
    momentum: float = 0.0
    dampening: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    alpha: float = 0.99
    centered: bool = False
    weight_decay: float = 0.0
    trust_coefficient: float = 0.001
    layers: tuple[int, ...] | None = None
    max_grad_norm: float | None = None

    def to_core(self) -> dict[str, Any]:
        """The plain description the backends receive."""
        out = asdict(self)
        out["beta1"], out["beta2"] = out.pop("betas")
        return out


def _clip(max_grad_norm: Any) -> float | None:
    return None if max_grad_norm is None else v.positive("max_grad_norm", max_grad_norm)


def _betas(betas: Any) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)):
        raise TypeError(
            f"betas must be a pair (beta1, beta2), got {type(betas).__name__} {betas!r}"
        )
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return v.in_range("betas[0]", betas[0], 0.0, 1.0), v.in_range("betas[1]", betas[1], 0.0, 1.0)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def _layers(layers: Any) -> tuple[int, ...] | None:
    if layers is None:
        return None
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(
            f"layers must be a list of layer sizes, got {type(layers).__name__} {layers!r}"
        )
    sizes = tuple(v.positive_int(f"layers[{i}]", n) for i, n in enumerate(layers))
    if not sizes:
        raise ValueError("layers must name at least one layer, got []")
    return sizes


def sgd(*, max_grad_norm: float | None = None, name: str = "sgd") -> Optimizer:
    """Plain minibatch SGD."""
    return Optimizer(kind="sgd", name=name, max_grad_norm=_clip(max_grad_norm))


def heavy_ball(
    momentum: float = 0.9,
    *,
    dampening: float = 0.0,
    max_grad_norm: float | None = None,
    name: str = "heavy_ball",
) -> Optimizer:
    """Heavy-ball momentum as in ``torch.optim.SGD(momentum=..., dampening=...)``."""
    return Optimizer(
        kind="heavy_ball",
        name=name,
        momentum=v.in_range("momentum", momentum, 0.0, 1.0),
        dampening=v.in_range("dampening", dampening, 0.0, 1.0),
        max_grad_norm=_clip(max_grad_norm),
    )


def nesterov(
    momentum: float = 0.9, *, max_grad_norm: float | None = None, name: str = "nesterov"
) -> Optimizer:
    """Nesterov momentum as in ``torch.optim.SGD(momentum=..., nesterov=True)``."""
    return Optimizer(
        kind="nesterov",
        name=name,
        momentum=v.in_range("momentum", momentum, 0.0, 1.0),
        max_grad_norm=_clip(max_grad_norm),
    )


def adam(
    betas: tuple[float, float] = (0.9, 0.999),
    *,
    eps: float = 1e-8,
    amsgrad: bool = False,
    max_grad_norm: float | None = None,
    name: str = "",
) -> Optimizer:
    """Adam with bias correction (and AMSGrad as a flag) as in ``torch.optim.Adam``."""
    amsgrad = _flag("amsgrad", amsgrad)
    return Optimizer(
        kind="adam",
        name=name or ("amsgrad" if amsgrad else "adam"),
        betas=_betas(betas),
        eps=v.positive("eps", eps),
        amsgrad=amsgrad,
        max_grad_norm=_clip(max_grad_norm),
    )


def rmsprop(
    alpha: float = 0.99,
    *,
    eps: float = 1e-8,
    momentum: float = 0.0,
    centered: bool = False,
    max_grad_norm: float | None = None,
    name: str = "rmsprop",
) -> Optimizer:
    """RMSProp as in ``torch.optim.RMSprop``."""
    return Optimizer(
        kind="rmsprop",
        name=name,
        alpha=v.in_range("alpha", alpha, 0.0, 1.0),
        eps=v.positive("eps", eps),
        momentum=v.in_range("momentum", momentum, 0.0, 1.0),
        centered=_flag("centered", centered),
        max_grad_norm=_clip(max_grad_norm),
    )


def adamw(
    betas: tuple[float, float] = (0.9, 0.999),
    *,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    amsgrad: bool = False,
    max_grad_norm: float | None = None,
    name: str = "adamw",
) -> Optimizer:
    r"""AdamW, Adam with decoupled weight decay, as ``torch.optim.AdamW`` (same defaults).

    .. math::
        x \leftarrow x (1 - \eta_t \lambda), \qquad
        x \leftarrow x - \frac{\eta_t}{1-\beta_1^t} \, m_t / (\sqrt{\hat v_t / (1-\beta_2^t)}
        + \epsilon),

    with ``weight_decay`` :math:`\lambda` and the moments of :func:`adam`.

    References:
        Loshchilov & Hutter 2019, "Decoupled weight decay regularization", Alg. 2
        (arXiv:1711.05101); ``torch.optim.AdamW``.

    """
    return Optimizer(
        kind="adamw",
        name=name,
        betas=_betas(betas),
        eps=v.positive("eps", eps),
        weight_decay=v.nonnegative("weight_decay", weight_decay),
        amsgrad=_flag("amsgrad", amsgrad),
        max_grad_norm=_clip(max_grad_norm),
    )


def lars(
    momentum: float = 0.9,
    *,
    trust_coefficient: float = 0.001,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    layers: list[int] | None = None,
    max_grad_norm: float | None = None,
    name: str = "lars",
) -> Optimizer:
    r"""LARS: SGD with momentum on layer-wise trust-ratio-scaled gradients.

    .. math::
        r_B = \frac{\eta \lVert x_B \rVert}{\lVert g_B \rVert + \lambda \lVert x_B \rVert
        + \epsilon}, \quad d_B = r_B (g_B + \lambda x_B), \quad
        m_t = \mu m_{t-1} + d_t \ (m_1 = d_1), \quad x_{t+1} = x_t - \eta_t m_t,

    per layer :math:`B` (``layers``, else the problem's declared layers), with
    ``trust_coefficient`` :math:`\eta`, ``weight_decay`` :math:`\lambda` and ``momentum``
    :math:`\mu`; a layer with :math:`\lVert x_B \rVert = 0` or :math:`\lVert g_B \rVert = 0`
    takes :math:`d_B = g_B`.

    References:
        You, Gitman & Ginsburg 2017, "Large batch training of convolutional networks", Alg. 1
        (arXiv:1708.03888), in the form of NVIDIA apex's ``apex.parallel.LARC`` (``clip=False``,
        the same ``eps`` and zero-norm rule) wrapping ``torch.optim.SGD(momentum)``.

    Warning:
        The paper's local learning rate is :math:`\eta_t` times the ratio with a polynomial
        decay inside; here the schedule of :math:`\eta_t` is the sweep's schedule.

    """
    return Optimizer(
        kind="lars",
        name=name,
        momentum=v.in_range("momentum", momentum, 0.0, 1.0),
        trust_coefficient=v.positive("trust_coefficient", trust_coefficient),
        weight_decay=v.nonnegative("weight_decay", weight_decay),
        eps=v.nonnegative("eps", eps),
        layers=_layers(layers),
        max_grad_norm=_clip(max_grad_norm),
    )


def lamb(
    betas: tuple[float, float] = (0.9, 0.999),
    *,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    layers: list[int] | None = None,
    max_grad_norm: float | None = None,
    name: str = "lamb",
) -> Optimizer:
    r"""LAMB: Adam's bias-corrected step, decayed and rescaled by a layer-wise trust ratio.

    .. math::
        u = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon} + \lambda x,
        \qquad x_B \leftarrow x_B - \eta_t \frac{\lVert x_B \rVert}{\lVert u_B \rVert} u_B,

    per layer :math:`B` (``layers``, else the problem's declared layers), with the moments of
    :func:`adam` and ``weight_decay`` :math:`\lambda`; the ratio is 1 when either norm is 0.

    References:
        You et al. 2020, "Large batch optimization for deep learning: training BERT in 76
        minutes", Alg. 2 with :math:`\phi` the identity (arXiv:1904.00962).

    """
    return Optimizer(
        kind="lamb",
        name=name,
        betas=_betas(betas),
        eps=v.positive("eps", eps),
        weight_decay=v.nonnegative("weight_decay", weight_decay),
        layers=_layers(layers),
        max_grad_norm=_clip(max_grad_norm),
    )


def lion(
    betas: tuple[float, float] = (0.9, 0.99),
    *,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = None,
    name: str = "lion",
) -> Optimizer:
    r"""Lion: the sign of an interpolated momentum, with decoupled weight decay.

    .. math::
        c = \beta_1 m + (1-\beta_1) g, \quad
        x_{t+1} = x_t - \eta_t (\mathrm{sign}(c) + \lambda x_t), \quad
        m \leftarrow \beta_2 m + (1-\beta_2) g,

    with ``betas`` :math:`(\beta_1, \beta_2)` and ``weight_decay`` :math:`\lambda`;
    :math:`\mathrm{sign}(0) = 0` as ``torch.sign``.

    References:
        Chen et al. 2023, "Symbolic discovery of optimization algorithms", Alg. 2
        (arXiv:2302.06675).

    """
    return Optimizer(
        kind="lion",
        name=name,
        betas=_betas(betas),
        weight_decay=v.nonnegative("weight_decay", weight_decay),
        max_grad_norm=_clip(max_grad_norm),
    )


def declared_layers(problem: Any) -> tuple[int, ...]:
    """The layer sizes a problem declares, in the order of its coordinates.

    The teacher-student network (:func:`critbatch.problems.make_teacher_student`) declares
    ``W`` (``width x d_in``) then ``a`` (``width``), as ``Problem::layers`` in the core; a
    network (:func:`critbatch.problems.network`) declares each parameter tensor (weights and
    biases apart), where apex's LARC and the LAMB reference implementations apply their trust
    ratios; every other problem is one block.

    Example:
        >>> from critbatch import problems
        >>> declared_layers(problems.make_teacher_student(n=8, d_in=3, width=2, seed=0))
        (6, 2)

    """
    if getattr(problem, "kind", None) == "teacher_student":
        width = int(problem.params["width"])
        return (width * int(problem.X.shape[1]), width)
    if getattr(problem, "kind", None) == "network":
        return tuple(problem.layer_sizes)
    return (int(problem.dim),)


def layers_for(optimizer: Optimizer, problem: Any) -> tuple[int, ...]:
    """The layers ``optimizer`` uses on ``problem``: its own ``layers``, else the declared ones."""
    return optimizer.layers if optimizer.layers is not None else declared_layers(problem)


def check_layers(optimizer: Optimizer, problem: Any, where: str) -> None:
    """Raise ValueError unless the optimizer's own ``layers`` add up to the problem's dimension.

    Args:
        optimizer: the optimizer spec.
        problem: a problem spec (anything with ``dim`` and ``name``).
        where: the optimizer's path in messages (``"optimizers[1]"``).

    """
    if optimizer.layers is not None and sum(optimizer.layers) != problem.dim:
        raise ValueError(
            f"{where}.layers must add up to the dimension of every problem, but "
            f"{list(optimizer.layers)} sums to {sum(optimizer.layers)} and problem "
            f"{problem.name!r} has {problem.dim} coordinates"
        )


def from_name(name: str) -> Optimizer:
    """The default spec of an optimizer named by its kind (``"sgd"``, ``"adam"``, ...)."""
    builders = {
        "sgd": sgd,
        "heavy_ball": heavy_ball,
        "momentum": heavy_ball,
        "nesterov": nesterov,
        "adam": adam,
        "amsgrad": lambda: adam(amsgrad=True),
        "rmsprop": rmsprop,
        "adamw": adamw,
        "lars": lars,
        "lamb": lamb,
        "lion": lion,
    }
    if name not in builders:
        raise ValueError(
            f"unknown optimizer {name!r}; expected one of {', '.join(sorted(builders))}"
        )
    return builders[name]()
