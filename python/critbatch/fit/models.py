r"""The laws K(b) that ``critbatch.fit`` fits: steps to target as a function of batch size.

Three laws, in two families:

- ``"rational"`` (Iiduka 2022): :math:`K(b) = k_\infty\, b / (b - b_{\min})`, finite only for
  :math:`b > b_{\min}`; the gradient cost :math:`N(b) = b K(b)` is minimized at
  :math:`b^\star = 2 b_{\min}`.
- ``"inverse"`` (Perrone et al. 2019): :math:`K(b) = k_\infty + \alpha / b`.
- ``"mccandlish"`` (McCandlish et al. 2018): :math:`S(B) = S_{\min}(1 + B_{\text{noise}}/B)`.

``"inverse"`` and ``"mccandlish"`` are the same curve in two coordinates
(:math:`S_{\min} = k_\infty`, :math:`B_{\text{noise}} = \alpha / k_\infty`): they give the same
maximum likelihood, residuals and information criteria, and differ only in which quantities get
bootstrap intervals. Both have ``family == "inverse"``.

Every law also gives the overhead batch size of Zhang et al. 2024: the batch size above which the
gradient cost exceeds its minimum by a fraction ``overhead`` (default 20 %); see
:func:`overhead_batch_size`.

Design notes. Every law is a location-shape curve in log space,

.. math::
    \log K(b) = c + g(b; \beta),

with a location :math:`c` (``log k_inf`` or ``log s_min``) and one shape parameter :math:`\beta`
that alone fixes the critical batch size (:math:`\log B_{\text{noise}}` for the inverse family,
:math:`b_{\min}` for the rational law). Given :math:`\beta`, the location and the noise scale have
a closed-form (or globally concave) maximum, so the fit profiles the likelihood over the single
parameter :math:`\beta` on a grid that reaches far beyond the data, including the limits where
the law degenerates (:math:`B_{\text{noise}} \to 0`: constant steps;
:math:`B_{\text{noise}} \to \infty`: perfect scaling :math:`K = E_{\min}/b`). That is what lets
the fit say "b* lies beyond the grid" instead of returning a large finite number
(:mod:`critbatch.fit.profile`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from critbatch import _validate as v

__all__ = [
    "LAWS",
    "Law",
    "inverse_from_mccandlish",
    "inverse_steps",
    "mccandlish_from_inverse",
    "mccandlish_steps",
    "overhead_batch_size",
    "rational_from_constants",
    "rational_steps",
]

# Log-parameters are bounded this far (in natural log units, a factor of about 7e10) beyond the
# range the data could support, so that a law whose best fit sends a parameter to 0 (for example
# perfect scaling, k_inf -> 0) still gives a finite, reportable optimum.
_LOG_SLACK = 25.0


def _batch_array(batch_size: Any) -> np.ndarray:
    array = np.asarray(batch_size, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"batch_size must be finite and positive, got {batch_size!r}")
    return array


def rational_steps(batch_size: Any, k_inf: float, b_min: float) -> Any:
    r"""Compute the steps to target under the rational law of Iiduka 2022.

    .. math::
        K(b) = \frac{k_\infty\, b}{b - b_{\min}} \quad (b > b_{\min}), \qquad
        K(b) = \infty \quad (b \le b_{\min}),

    the form :math:`K = C_1 b / ((\varepsilon^2 - C_3) b - C_2)` with
    :math:`k_\infty = C_1/(\varepsilon^2 - C_3)` (``k_inf``) and
    :math:`b_{\min} = C_2/(\varepsilon^2 - C_3)` (``b_min``); see
    :func:`rational_from_constants`.

    Args:
        batch_size: batch size(s) :math:`b > 0` (scalar or array).
        k_inf: the large-batch limit :math:`k_\infty > 0` of the steps.
        b_min: the pole :math:`b_{\min} \ge 0`; no batch size at or below it reaches the target.

    Returns:
        :math:`K(b)` with the shape of ``batch_size`` (``inf`` where :math:`b \le b_{\min}`).

    Example:
        >>> float(rational_steps(20.0, k_inf=100.0, b_min=10.0))
        200.0

    References:
        Iiduka 2022, "Critical batch size minimizes stochastic first-order oracle complexity of
        deep learning optimizer using hyperparameters close to one",
        arXiv:2108.11713 ([stated] K is a rational function of b; the exact form is derived
        following the paper's method; not checked against the paper's own equations).

    """
    k_inf = v.positive("k_inf", k_inf)
    b_min = v.nonnegative("b_min", b_min)
    b = _batch_array(batch_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.where(b > b_min, k_inf * b / (b - b_min), np.inf)
    return steps if steps.ndim else float(steps)


def inverse_steps(batch_size: Any, k_inf: float, alpha: float) -> Any:
    r"""Compute the steps to target under the inverse law of Perrone et al. 2019.

    .. math::
        K(b) = k_\infty + \frac{\alpha}{b},

    with :math:`k_\infty` (``k_inf``) the large-batch limit and :math:`\alpha` (``alpha``) the
    gradient cost :math:`\lim_{b \to 0} b K(b)` of perfect scaling.

    Args:
        batch_size: batch size(s) :math:`b > 0`.
        k_inf: :math:`k_\infty > 0`.
        alpha: :math:`\alpha \ge 0`.

    Returns:
        :math:`K(b)` with the shape of ``batch_size``.

    Example:
        >>> float(inverse_steps(50.0, k_inf=100.0, alpha=10_000.0))
        300.0

    References:
        Perrone et al. 2019, "Optimal mini-batch size selection for fast gradient descent",
        arXiv:1911.06459 ([stated] the empirical inverse law between batch size and updates).

    """
    k_inf = v.positive("k_inf", k_inf)
    alpha = v.nonnegative("alpha", alpha)
    steps = k_inf + alpha / _batch_array(batch_size)
    return steps if steps.ndim else float(steps)


def mccandlish_steps(batch_size: Any, s_min: float, b_noise: float) -> Any:
    r"""Compute the steps to target under the empirical model of McCandlish et al. 2018.

    .. math::
        S(B) = S_{\min}\left(1 + \frac{B_{\text{noise}}}{B}\right),

    with :math:`S_{\min}` (``s_min``) the fewest steps (infinite batch) and
    :math:`B_{\text{noise}}` (``b_noise``) the noise scale; the fewest examples are
    :math:`E_{\min} = S_{\min} B_{\text{noise}}` and the critical batch size
    :math:`B_{\text{crit}} = E_{\min}/S_{\min} = B_{\text{noise}}`.

    Args:
        batch_size: batch size(s) :math:`B > 0`.
        s_min: :math:`S_{\min} > 0`.
        b_noise: :math:`B_{\text{noise}} \ge 0`.

    Returns:
        :math:`S(B)` with the shape of ``batch_size``.

    Example:
        >>> float(mccandlish_steps(100.0, s_min=100.0, b_noise=100.0))
        200.0

    References:
        McCandlish, Kaplan, Amodei and the OpenAI Dota Team 2018, "An empirical model of
        large-batch training", arXiv:1812.06162 ([stated] the steps-examples trade-off
        :math:`(S/S_{\min} - 1)(E/E_{\min} - 1) = 1` and
        :math:`B_{\text{crit}} = E_{\min}/S_{\min}`).

    """
    s_min = v.positive("s_min", s_min)
    b_noise = v.nonnegative("b_noise", b_noise)
    steps = s_min * (1.0 + b_noise / _batch_array(batch_size))
    return steps if steps.ndim else float(steps)


def mccandlish_from_inverse(k_inf: float, alpha: float) -> tuple[float, float]:
    r"""Map the inverse law's ``(k_inf, alpha)`` to McCandlish's ``(s_min, b_noise)``.

    .. math::
        S_{\min} = k_\infty, \qquad B_{\text{noise}} = \alpha / k_\infty.

    Args:
        k_inf: :math:`k_\infty > 0`.
        alpha: :math:`\alpha \ge 0`.

    Returns:
        ``(s_min, b_noise)``.

    Example:
        >>> mccandlish_from_inverse(100.0, 10_000.0)
        (100.0, 100.0)

    References:
        Perrone et al. 2019, arXiv:1911.06459; McCandlish et al. 2018, arXiv:1812.06162 (the
        identity is ours: expand :math:`S_{\min}(1 + B_{\text{noise}}/B)`).

    """
    k_inf = v.positive("k_inf", k_inf)
    return k_inf, v.nonnegative("alpha", alpha) / k_inf


def inverse_from_mccandlish(s_min: float, b_noise: float) -> tuple[float, float]:
    r"""Map McCandlish's ``(s_min, b_noise)`` to the inverse law's ``(k_inf, alpha)``.

    .. math::
        k_\infty = S_{\min}, \qquad \alpha = S_{\min} B_{\text{noise}} = E_{\min}.

    Args:
        s_min: :math:`S_{\min} > 0`.
        b_noise: :math:`B_{\text{noise}} \ge 0`.

    Returns:
        ``(k_inf, alpha)``.

    Example:
        >>> inverse_from_mccandlish(100.0, 100.0)
        (100.0, 10000.0)

    References:
        McCandlish et al. 2018, arXiv:1812.06162; Perrone et al. 2019, arXiv:1911.06459.

    """
    s_min = v.positive("s_min", s_min)
    return s_min, s_min * v.nonnegative("b_noise", b_noise)


def rational_from_constants(c1: float, c2: float, c3: float, epsilon: float) -> tuple[float, float]:
    r"""Map the bound constants :math:`C_1, C_2, C_3` and target to ``(k_inf, b_min)``.

    From :math:`C_1/K + C_2/b + C_3 = \varepsilon^2`:

    .. math::
        K(b) = \frac{C_1 b}{(\varepsilon^2 - C_3) b - C_2}, \qquad
        k_\infty = \frac{C_1}{\varepsilon^2 - C_3}, \qquad
        b_{\min} = \frac{C_2}{\varepsilon^2 - C_3}.

    Args:
        c1: :math:`C_1 > 0` (the optimization term).
        c2: :math:`C_2 \ge 0` (the variance term).
        c3: :math:`C_3 \ge 0` (the bias term of adaptive methods; 0 for SGD).
        epsilon: the target gradient norm :math:`\varepsilon`, with :math:`\varepsilon^2 > C_3`.

    Returns:
        ``(k_inf, b_min)``.

    Example:
        >>> rational_from_constants(c1=4.0, c2=2.0, c3=0.0, epsilon=1.0)
        (4.0, 2.0)

    References:
        Iiduka 2022, arXiv:2108.11713: derived following the paper's method; not checked against
        the paper's own equations.

    """
    c1 = v.positive("c1", c1)
    c2 = v.nonnegative("c2", c2)
    c3 = v.nonnegative("c3", c3)
    epsilon = v.positive("epsilon", epsilon)
    gap = epsilon**2 - c3
    if gap <= 0:
        raise ValueError(f"epsilon**2 must exceed c3, got epsilon={epsilon!r}, c3={c3!r}")
    return c1 / gap, c2 / gap


def overhead_batch_size(model: str, params: dict[str, float], overhead: float = 0.2) -> float:
    r"""Return the batch size above which the gradient cost exceeds its minimum by ``overhead``.

    The largest :math:`b` with :math:`N(b) = b K(b) \le (1 + r) \inf_{b'} N(b')`, where
    :math:`r` is ``overhead``. For the inverse family :math:`\inf N = \alpha` (perfect scaling,
    :math:`b \to 0`) and this is the definition of Zhang et al. 2024: steps exceed perfect linear
    scaling by :math:`r`,

    .. math::
        k_\infty + \frac{\alpha}{b} = (1 + r)\frac{\alpha}{b}
        \iff b_r = r\,\frac{\alpha}{k_\infty} = r\, B_{\text{noise}}.

    The rational law has no perfect-scaling regime; with :math:`\min N = N(2 b_{\min})` the same
    cost criterion gives

    .. math::
        b_r = 2 b_{\min}\left(1 + r + \sqrt{r(1 + r)}\right).

    Args:
        model: ``"rational"``, ``"inverse"`` or ``"mccandlish"``.
        params: the law's parameters, as in ``LAWS[model].param_names``.
        overhead: :math:`r > 0`, the allowed fractional excess (0.2 is the paper's 20 %).

    Returns:
        :math:`b_r`.

    Example:
        >>> overhead_batch_size("inverse", {"k_inf": 100.0, "alpha": 10_000.0}, overhead=0.2)
        20.0

    References:
        Zhang, Morwani, Vyas, Wu, Zou, Ghai, Foster, Kakade 2024, "How does critical batch size
        scale in pre-training?", arXiv:2410.21676 ([stated] the 20 % overhead over linear scaling);
        the rational-law form is derived following that definition, not from the paper.

    """
    law = LAWS.get(model)
    if law is None:
        raise ValueError(f"model must be one of {', '.join(map(repr, LAWS))}, got {model!r}")
    return law.overhead_batch_size(law.check_params(params), overhead)


_CRITICAL_KINDS = ("knee", "overhead")


@dataclass(frozen=True)
class Law:
    r"""A law K(b) as the fit sees it: :math:`\log K = c + g(b; \beta)` with one shape parameter.

    Attributes:
        name: the key in :data:`LAWS`.
        family: laws with the same family are reparametrizations of one curve.
        param_names: the parameters, location first.
        critical_definition: what the critical batch size means for this law.
        reference: the source, as cited in the formula's docstring.
        beta_name: what the shape parameter :math:`\beta` is.

    """

    name: str
    family: str
    param_names: tuple[str, ...]
    critical_definition: str
    reference: str
    beta_name: str

    def check_params(self, params: dict[str, float]) -> dict[str, float]:
        """Return ``params`` as floats after checking the names and signs."""
        if not isinstance(params, dict) or set(params) != set(self.param_names):
            raise ValueError(
                f"params for model {self.name!r} must have keys "
                f"{list(self.param_names)}, got {params!r}"
            )
        first, second = self.param_names
        return {
            first: v.positive(first, params[first]),
            second: v.nonnegative(second, params[second]),
        }

    def steps(self, batch_size: Any, params: dict[str, float]) -> Any:
        """K(b) at the given parameters (calls the law's formula function)."""
        p = self.check_params(params)
        if self.name == "rational":
            return rational_steps(batch_size, p["k_inf"], p["b_min"])
        if self.name == "inverse":
            return inverse_steps(batch_size, p["k_inf"], p["alpha"])
        return mccandlish_steps(batch_size, p["s_min"], p["b_noise"])

    def critical_batch_size(self, params: dict[str, float]) -> float:
        """Return the critical batch size (``2 b_min``, ``alpha / k_inf`` or ``b_noise``)."""
        p = self.check_params(params)
        if self.name == "rational":
            return 2.0 * p["b_min"]
        if self.name == "inverse":
            return p["alpha"] / p["k_inf"]
        return p["b_noise"]

    def overhead_batch_size(self, params: dict[str, float], overhead: float) -> float:
        """See the module function :func:`overhead_batch_size`."""
        r = v.positive("overhead", overhead)
        if self.name == "rational":
            return 2.0 * params["b_min"] * (1.0 + r + math.sqrt(r * (1.0 + r)))
        return r * self.critical_batch_size(params)

    # ---- the fit's coordinates: log K = c + g(b; beta) -----------------------------------------

    def shape(self, b: np.ndarray, beta: np.ndarray) -> np.ndarray:
        r"""Return :math:`g(b; \beta)` for every ``beta`` (rows) and ``b`` (columns).

        ``beta`` may hold the limits of the inverse family: :math:`-\infty` gives :math:`g = 0`
        (constant steps) and :math:`+\infty` gives :math:`g = -\log b` (perfect scaling, the
        location then being :math:`\log E_{\min}`). The rational law gives ``+inf`` at
        :math:`b \le b_{\min}` (no finite K there).
        """
        b = np.asarray(b, dtype=float)[None, :]
        beta = np.atleast_1d(np.asarray(beta, dtype=float))[:, None]
        if self.name == "rational":
            with np.errstate(divide="ignore", invalid="ignore"):
                gap = 1.0 - beta / b
                return np.where(gap > 0, -np.log(np.where(gap > 0, gap, 1.0)), np.inf)
        log_b = np.log(b)
        with np.errstate(invalid="ignore"):
            g = np.logaddexp(0.0, beta - log_b)
        g = np.where(beta == -np.inf, 0.0, g)
        return np.where(beta == np.inf, np.broadcast_to(-log_b, g.shape), g)

    def log_steps(self, location: float, beta: float, batch_size: Any) -> np.ndarray:
        r"""Return log K at fit coordinates ``(location, beta)`` (``beta`` may be a limit)."""
        b = np.atleast_1d(np.asarray(batch_size, dtype=float))
        return location + self.shape(b, np.array([beta]))[0, :]

    def params_at(self, location: float, beta: float) -> dict[str, float]:
        """Return the law's parameters at fit coordinates (limits give 0 and inf entries)."""
        scale = math.exp(location)
        if self.name == "rational":
            return {"k_inf": scale, "b_min": float(beta)}
        if beta == math.inf:  # perfect scaling: K = E_min / b with E_min = exp(location)
            return (
                {"k_inf": 0.0, "alpha": scale}
                if self.name == "inverse"
                else {"s_min": 0.0, "b_noise": math.inf}
            )
        noise = math.exp(beta)
        if self.name == "inverse":
            return {"k_inf": scale, "alpha": scale * noise}
        return {"s_min": scale, "b_noise": noise}

    def critical_from_beta(
        self, beta: Any, critical: str = "knee", overhead: float = 0.2, reference_batch: float = 0.0
    ) -> Any:
        r"""Map the shape parameter to the critical batch size (monotone increasing).

        ``critical="knee"``: :math:`B_{\text{noise}}` for the inverse family, :math:`2 b_{\min}`
        for the rational law. ``"overhead"``: the batch size at which the steps exceed linear
        scaling by the fraction :math:`r` (``overhead``), linear scaling counted from
        ``reference_batch`` :math:`b_0`, :math:`K_{\text{lin}}(b) = K(b_0)\, b_0 / b`. For the
        inverse law :math:`K = k_\infty + \alpha/b` this is

        .. math::
            b_r = (1 + r)\, b_0 + r\, B_{\text{noise}},

        which is Zhang et al. 2024's critical batch size (their code takes :math:`r = 0.2`,
        :math:`b_0 = 256`); :math:`b_0 = 0` is linear scaling from :math:`b \to 0`,
        :math:`r B_{\text{noise}}`. The rational law has no perfect-scaling regime: its
        overhead batch size is :func:`overhead_batch_size` (``reference_batch`` must be 0).
        """
        if critical not in _CRITICAL_KINDS:
            raise ValueError(f"critical must be one of {_CRITICAL_KINDS}, got {critical!r}")
        if reference_batch and (self.name == "rational" or critical != "overhead"):
            raise ValueError(
                "reference_batch applies to critical='overhead' with the inverse "
                f"family, got model {self.name!r}, critical {critical!r}"
            )
        beta = np.asarray(beta, dtype=float)
        if self.name == "rational":
            factor = 2.0
            if critical == "overhead":
                factor *= 1.0 + overhead + math.sqrt(overhead * (1.0 + overhead))
            out = factor * beta
        elif critical == "overhead":
            out = overhead * np.exp(beta) + (1.0 + overhead) * reference_batch
        else:
            out = np.exp(beta)
        return out if out.ndim else float(out)

    def beta_grid(self, b: np.ndarray, reached: np.ndarray) -> tuple[np.ndarray, float, float]:
        r"""Return the profile grid of :math:`\beta` and the two ends of its domain.

        Inverse family: :math:`\log B_{\text{noise}}` from :math:`e^{-12}` times the smallest
        batch size to :math:`e^{12}` times the largest, every 0.05 (the law there differs from
        its limits by under :math:`10^{-5}` in log K); the ends are :math:`\mp\infty`.
        Rational law: :math:`b_{\min}` from 0 up to the smallest batch size with a reached run,
        finer towards the pole.
        """
        if self.name == "rational":
            pole = float(np.min(b[reached]))
            gaps = np.concatenate([np.linspace(1.0, 0.1, 91)[:-1], np.geomspace(0.1, 1e-9, 161)])
            return pole * (1.0 - gaps), 0.0, pole
        lo, hi = math.log(float(np.min(b))) - 12.0, math.log(float(np.max(b))) + 12.0
        return np.linspace(lo, hi, int((hi - lo) / 0.05) + 1), -math.inf, math.inf


LAWS: dict[str, Law] = {
    "rational": Law(
        name="rational",
        family="rational",
        param_names=("k_inf", "b_min"),
        critical_definition="b* = 2 b_min, the minimizer of the gradient cost b K(b)",
        reference="Iiduka 2022, arXiv:2108.11713 (rational form derived following its method)",
        beta_name="b_min",
    ),
    "inverse": Law(
        name="inverse",
        family="inverse",
        param_names=("k_inf", "alpha"),
        critical_definition="alpha / k_inf, McCandlish's B_noise = B_crit (the knee of K(b))",
        reference="Perrone et al. 2019, arXiv:1911.06459",
        beta_name="log(alpha / k_inf)",
    ),
    "mccandlish": Law(
        name="mccandlish",
        family="inverse",
        param_names=("s_min", "b_noise"),
        critical_definition="B_crit = E_min / S_min = B_noise (the knee of K(b))",
        reference="McCandlish et al. 2018, arXiv:1812.06162",
        beta_name="log b_noise",
    ),
}
