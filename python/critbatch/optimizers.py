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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from critbatch import _validate as v

KINDS = ("sgd", "heavy_ball", "nesterov", "adam", "rmsprop")


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

    def to_core(self) -> dict[str, Any]:
        """The plain description the backends receive."""
        out = asdict(self)
        out["beta1"], out["beta2"] = out.pop("betas")
        return out


def sgd(*, name: str = "sgd") -> Optimizer:
    """Plain minibatch SGD."""
    return Optimizer(kind="sgd", name=name)


def heavy_ball(
    momentum: float = 0.9, *, dampening: float = 0.0, name: str = "heavy_ball"
) -> Optimizer:
    """Heavy-ball momentum as in ``torch.optim.SGD(momentum=..., dampening=...)``."""
    return Optimizer(
        kind="heavy_ball",
        name=name,
        momentum=v.in_range("momentum", momentum, 0.0, 1.0),
        dampening=v.in_range("dampening", dampening, 0.0, 1.0),
    )


def nesterov(momentum: float = 0.9, *, name: str = "nesterov") -> Optimizer:
    """Nesterov momentum as in ``torch.optim.SGD(momentum=..., nesterov=True)``."""
    return Optimizer(
        kind="nesterov", name=name, momentum=v.in_range("momentum", momentum, 0.0, 1.0)
    )


def adam(
    betas: tuple[float, float] = (0.9, 0.999),
    *,
    eps: float = 1e-8,
    amsgrad: bool = False,
    name: str = "",
) -> Optimizer:
    """Adam with bias correction (and AMSGrad as a flag) as in ``torch.optim.Adam``."""
    if not isinstance(betas, (tuple, list)):
        raise TypeError(f"betas must be a pair (beta1, beta2), got {type(betas).__name__} "
                        f"{betas!r}")
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    beta1 = v.in_range("betas[0]", betas[0], 0.0, 1.0)
    beta2 = v.in_range("betas[1]", betas[1], 0.0, 1.0)
    if not isinstance(amsgrad, bool):
        raise TypeError(f"amsgrad must be a bool, got {amsgrad!r}")
    return Optimizer(
        kind="adam",
        name=name or ("amsgrad" if amsgrad else "adam"),
        betas=(beta1, beta2),
        eps=v.positive("eps", eps),
        amsgrad=amsgrad,
    )


def rmsprop(
    alpha: float = 0.99,
    *,
    eps: float = 1e-8,
    momentum: float = 0.0,
    centered: bool = False,
    name: str = "rmsprop",
) -> Optimizer:
    """RMSProp as in ``torch.optim.RMSprop``."""
    if not isinstance(centered, bool):
        raise TypeError(f"centered must be a bool, got {centered!r}")
    return Optimizer(
        kind="rmsprop",
        name=name,
        alpha=v.in_range("alpha", alpha, 0.0, 1.0),
        eps=v.positive("eps", eps),
        momentum=v.in_range("momentum", momentum, 0.0, 1.0),
        centered=centered,
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
    }
    if name not in builders:
        raise ValueError(
            f"unknown optimizer {name!r}; expected one of {', '.join(sorted(builders))}"
        )
    return builders[name]()
