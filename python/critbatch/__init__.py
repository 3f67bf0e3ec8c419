"""critbatch: how many steps K(b) an optimizer needs at batch size b, and what the theories predict.

The Rust core (``critbatch._core``) runs minibatch SGD, momentum, Adam and RMSProp on synthetic
problems in parallel; the theory (``critbatch.theory``) holds the papers' formulas;
``critbatch.fit`` fits them to sweep results; ``critbatch.torch`` runs the same specs on torch
(CPU or GPU).
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from critbatch import optimizers, problems, schedules, targets
from critbatch.plan import Plan, make_plan
from critbatch.results import Results
from critbatch.sweep import SweepInterrupted, execute, sweep

__all__ = [
    "Plan",
    "Results",
    "SweepInterrupted",
    "execute",
    "make_plan",
    "optimizers",
    "problems",
    "schedules",
    "sweep",
    "targets",
]
try:  # one source: Cargo.toml's version, which maturin writes into the package metadata
    __version__ = _version("critbatch")
except PackageNotFoundError:  # pragma: no cover - a source tree on sys.path, never installed
    __version__ = "0+unknown"
