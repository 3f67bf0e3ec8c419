"""The papers' formulas, one pure module per paper (numpy and scipy only, no compiled core).

Each function's docstring says whether its formula is [stated] by the paper (its abstract, or a
standard result under its name) or [derived] here following the paper's method and checked
against an exact oracle or Monte Carlo; docs/theory/<module>.md derives each one.

Every function broadcasts (docs/theory/README.md): its numeric parameters may be NumPy arrays,
broadcast against each other (all scalars in: a float out; any array in: an array out);
sequences such as a spectrum, a schedule or a measured curve are core dimensions, last in a
result. An argument outside its own domain raises ``ValueError`` naming it; valid arguments at
which a formula has no finite value give ``inf`` (a target never reached, a quantity without
bound) or ``nan`` (a quantity that does not exist) at that element, as each docstring says. The
batch size is ``batch_size`` in every module (``batch_sizes`` for a grid or schedule), whatever
symbol the paper uses (b, B, M).

- :mod:`.iiduka2022`: K(b) as a rational function of b, the critical batch size b* = 2C₂/ε².
- :mod:`.umeda_iiduka2025`: growth schedules for b and η, costed by a bound on varying (b, η).
- :mod:`.perrone2019`: the inverse law K(M) = K_inf + alpha/M and the time-optimal batch size.
- :mod:`.mccandlish2018`: the gradient noise scale, the steps/examples trade-off, estimators.
- :mod:`.zhang2019`: the noisy quadratic model, exact in expectation (SGD, momentum,
  preconditioning, iterate averaging), and steps to a target from its closed form.
- :mod:`.dai_zhu2018`: escape times from minima, Kramers, the warped double well.
- :mod:`.perko2023`: optimal batch-size schedules from the SDE expansion, linear regression.
- :mod:`.smith2018`, :mod:`.goyal2017`, :mod:`.zhang2024`: noise scale, linear scaling rule,
  and the critical batch size as an overhead over linear scaling.
"""

from critbatch.theory import (
    dai_zhu2018,
    goyal2017,
    iiduka2022,
    mccandlish2018,
    perko2023,
    perrone2019,
    smith2018,
    umeda_iiduka2025,
    zhang2019,
    zhang2024,
)

__all__ = [
    "dai_zhu2018",
    "goyal2017",
    "iiduka2022",
    "mccandlish2018",
    "perko2023",
    "perrone2019",
    "smith2018",
    "umeda_iiduka2025",
    "zhang2019",
    "zhang2024",
]
