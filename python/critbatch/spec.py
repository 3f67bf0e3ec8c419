"""Sweep specs: a whole sweep as one validated value, read from and written to TOML.

A spec names its problems by *generator* (``kind`` plus the arguments of the constructor in
:mod:`critbatch.problems`), so that a few lines of TOML describe data sets of any size and the
same file always rebuilds the same arrays. Everything is checked when the spec is built, before
anything runs; a bad file raises :class:`SpecError`, whose message names the file, the key path
(``optimizers[1].momentum``) and the reason.

The TOML layout (every key but ``problem``/``problems``, ``optimizers``, ``batch_sizes`` and
``learning_rates`` is optional)::

    name = "nqm-vs-adam"              # a label for reports
    optimizers = ["sgd", {kind = "heavy_ball", momentum = 0.9}, "adam"]
    batch_sizes = [1, 4, 16, 64]
    learning_rates = [0.1, 0.3]
    seeds = 4                         # a count (0..3) or a list of replicate ids
    seed = 0                          # the sweep seed
    backend = "rust"                  # or "torch"
    device = "cpu"                    # torch device
    chunk_size = 1000                 # runs per stored chunk (16384 on a GPU)
    trajectory_every = 0
    trajectory_metrics = ["loss"]     # and/or "grad_norm" (critbatch.plan.TRAJECTORY_METRICS)
    dtype = "float32"                 # default float64 (synthetic), float32 (networks)
    precision = "highest"             # torch: or "tf32", "bf16" (autocast of networks)
    mode = "steps"                    # core, NQM: or "exact_jumps" (critbatch.plan.MODES)
    common_random_numbers = false     # share noise across optimizers, schedules and lrs
    weight_averaging = 0.999          # checks read an EWA of the weights (critbatch.plan)

    [problem]                         # or [[problems]], once per problem
    kind = "nqm_power_law"            # nqm_power_law, nqm, least_squares, logistic, robust,
    dim = 16                          # teacher_student, double_well, network (torch backend)
    name = "nqm16"

    [target]                          # the arguments of critbatch.targets.target
    loss_below = 0.01
    max_steps = 5000

    [[schedules]]                     # name, lr, batch (rule tables) and max_batch_size
    name = "decay"
    lr = {kind = "step", every = 200, gamma = 0.5}

    [search]                          # instead of learning_rates: quasi-random trials per b
    trials = 16                       # the budget per batch size (critbatch.search)
    method = "halton"                 # or "sobol" (trials: a power of two)
    seed = 0                          # the scrambling's seed
    learning_rate = {low = 0.01, high = 1.0}       # scale = "log_uniform" by default
    decay_factor = {low = 0.1, high = 0.9, scale = "uniform"}

A ``[search]`` table's dimensions are those of :data:`critbatch.search.DIMENSIONS`, each a table
``{low, high, scale}``; the trials set the hyperparameters of every optimizer and schedule of the
spec (:func:`critbatch.search.expand`), the same trials at every batch size, and their runs use
common random numbers.

Rule tables take the arguments of the rule constructors in :mod:`critbatch.schedules`:
``constant``; ``step`` (every, gamma, unit); ``cosine`` (period, min_factor, unit);
``geometric`` (every, rate, max_factor, unit); ``polynomial`` (every, power, max_factor, unit);
``linear`` (every, increment, max_factor, unit).

The reference, key by key, is ``docs/spec.md``; ``examples/specs/`` holds one spec per problem
kind; :func:`critbatch.schema.spec_schema` (``critbatch schema``) is the JSON Schema editors use
to complete and check keys. ``critbatch validate SPEC --set key=value`` checks a spec with
overrides (:func:`apply_overrides`) without running it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import inspect
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from critbatch import _validate as v
from critbatch import optimizers as opt
from critbatch import problems as prob
from critbatch import schedules as sch
from critbatch import search as srch
from critbatch import targets as tgt
from critbatch.plan import (
    DTYPES,
    MODES,
    PRECISIONS,
    Plan,
    check_backend,
    check_trajectory_metrics,
    check_weight_averaging,
    make_plan,
)

__all__ = [
    "OPTIMIZER_NAMES",
    "PROBLEM_KINDS",
    "ProblemSpec",
    "SpecError",
    "SweepSpec",
    "apply_overrides",
    "did_you_mean",
    "dumps",
    "from_dict",
    "load_spec",
    "loads",
    "problem",
    "sweep_spec",
]

#: The generator behind each problem ``kind`` of a spec.
PROBLEM_KINDS: dict[str, Callable[..., prob.Problem | prob.Network]] = {
    "nqm_power_law": prob.nqm_power_law,
    "nqm": prob.nqm,
    "least_squares": prob.make_least_squares,
    "logistic": prob.make_logistic,
    "robust": prob.make_robust_regression,
    "teacher_student": prob.make_teacher_student,
    "double_well": prob.double_well,
    "network": prob.network,
}

_OPTIMIZER_BUILDERS: dict[str, Callable[..., opt.Optimizer]] = {
    "sgd": opt.sgd,
    "heavy_ball": opt.heavy_ball,
    "nesterov": opt.nesterov,
    "adam": opt.adam,
    "rmsprop": opt.rmsprop,
    "adamw": opt.adamw,
    "lars": opt.lars,
    "lamb": opt.lamb,
    "lion": opt.lion,
}

# rule kind -> (constructor, {toml key: Rule attribute}) ; the first key is positional
_RULES: dict[str, tuple[Callable[..., sch.Rule], dict[str, str]]] = {
    "constant": (sch.constant, {}),
    "step": (sch.step_decay, {"every": "every", "gamma": "rate", "unit": "unit"}),
    "cosine": (sch.cosine, {"period": "every", "min_factor": "min_factor", "unit": "unit"}),
    "geometric": (
        sch.geometric,
        {"every": "every", "rate": "rate", "max_factor": "max_factor", "unit": "unit"},
    ),
    "polynomial": (
        sch.polynomial,
        {"every": "every", "power": "rate", "max_factor": "max_factor", "unit": "unit"},
    ),
    "linear": (
        sch.linear,
        {"every": "every", "increment": "rate", "max_factor": "max_factor", "unit": "unit"},
    ),
}

_TOP_KEYS = (
    "name",
    "problem",
    "problems",
    "optimizers",
    "batch_sizes",
    "learning_rates",
    "seeds",
    "seed",
    "target",
    "schedules",
    "search",
    "backend",
    "device",
    "chunk_size",
    "trajectory_every",
    "trajectory_metrics",
    "dtype",
    "precision",
    "mode",
    "common_random_numbers",
    "weight_averaging",
)
_TARGET_KEYS = tuple(inspect.signature(tgt.target).parameters)
_SCHEDULE_KEYS = ("name", "lr", "batch", "max_batch_size", "warmup", "warmup_start")
_SEARCH_KEYS = ("trials", "method", "seed", *srch.DIMENSIONS)
_DIMENSION_KEYS = ("low", "high", "scale")
BACKENDS = ("rust", "torch")
DEFAULT_CHUNK_SIZE = 1000
#: Runs per stored chunk on a GPU when the spec does not say: one chunk is one batched program,
#: and a GPU needs thousands of runs in flight to be busy.
DEFAULT_GPU_CHUNK_SIZE = 16384
#: The optimizer names a spec accepts as plain strings (:func:`critbatch.optimizers.from_name`).
OPTIMIZER_NAMES = (
    "sgd",
    "heavy_ball",
    "momentum",
    "nesterov",
    "adam",
    "amsgrad",
    "rmsprop",
    "adamw",
    "lars",
    "lamb",
    "lion",
)


class SpecError(ValueError):
    """A spec that cannot run: names the file, the key path inside it and the reason.

    Example:
        >>> str(SpecError("sweep.toml", "batch_sizes[2]", "must be positive"))
        'sweep.toml: batch_sizes[2]: must be positive'

    """

    def __init__(self, file: str, path: str, reason: str) -> None:
        self.file, self.path, self.reason = file, path, reason
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, eq=False)
class ProblemSpec:
    """A problem by generator: ``kind`` (a key of :data:`PROBLEM_KINDS`) and its arguments.

    ``params`` holds plain values only (numbers, strings, bools, lists of numbers), so the spec
    writes to TOML; ``name`` is accepted for every kind and renames the built problem.
    """

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> prob.Problem | prob.Network:
        """Generate the problem (its data set, if any, comes from the ``seed`` argument)."""
        params = dict(self.params)
        builder = PROBLEM_KINDS[self.kind]
        accepts_name = "name" in inspect.signature(builder).parameters
        name = params.pop("name", None) if not accepts_name else None
        built = builder(**params)
        return dataclasses.replace(built, name=name) if name is not None else built

    @property
    def name(self) -> str:
        """The name the built problem will carry."""
        if "name" in self.params:
            return str(self.params["name"])
        if self.kind == "network":  # its default name, without loading the data
            return f"{self.params['model']}/{self.params['data']}"
        return str(self.build().name)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ProblemSpec)
            and self.kind == other.kind
            and _canonical(dict(self.params)) == _canonical(dict(other.params))
        )

    __hash__ = None  # type: ignore[assignment]


def problem(kind: str, **params: Any) -> ProblemSpec:
    """Build a checked :class:`ProblemSpec` (the Python spelling of a ``[problem]`` table).

    Example:
        >>> problem("least_squares", n=64, d=4, seed=1).build().X.shape
        (64, 4)

    """
    return _problem_spec("<python>", "problem", {"kind": kind, **params})


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: problems, optimizers, schedules and the grid, plus how to run and store it.

    Build one with :func:`sweep_spec` (from Python objects) or :func:`load_spec` (from TOML);
    both validate everything. ``seeds`` is the tuple of replicate ids.
    """

    problems: tuple[ProblemSpec, ...]
    optimizers: tuple[opt.Optimizer, ...]
    batch_sizes: tuple[int, ...]
    learning_rates: tuple[float, ...]
    seeds: tuple[int, ...]
    target: tgt.Target
    schedules: tuple[sch.Schedule, ...] = (sch.Schedule(),)
    #: A quasi-random search (a ``[search]`` table); its trials' learning rates are then
    #: ``learning_rates``, in trial order.
    search: srch.Search | None = None
    seed: int = 0
    backend: str = "rust"
    device: str = "cpu"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    trajectory_every: int = 0
    name: str = "sweep"
    dtype: str | None = None
    precision: str = "highest"
    mode: str = "steps"
    common_random_numbers: bool = False
    trajectory_metrics: tuple[str, ...] = ("loss",)
    weight_averaging: float | None = None

    def to_plan(self) -> Plan:
        """Generate the problems and lay out the grid (:func:`critbatch.plan.make_plan`)."""
        return make_plan(
            [p.build() for p in self.problems],
            list(self.optimizers),
            list(self.batch_sizes),
            None if self.search else list(self.learning_rates),
            list(self.seeds),
            self.target,
            schedules=list(self.schedules),
            search=self.search,
            seed=self.seed,
            trajectory_every=self.trajectory_every,
            trajectory_metrics=self.trajectory_metrics,
            weight_averaging=self.weight_averaging,
            dtype=self.dtype,
            precision=self.precision,
            mode=self.mode,
            common_random_numbers=self.common_random_numbers,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain TOML-ready data (the inverse of :func:`loads`)."""
        seeds: Any = list(self.seeds)
        if self.seeds == tuple(range(len(self.seeds))):
            seeds = len(self.seeds)
        # dtype, precision, mode and common random numbers appear only when set, so older
        # specs keep their hash
        how: dict[str, Any] = {
            k: x
            for k, x in (("dtype", self.dtype), ("precision", self.precision), ("mode", self.mode))
            if x is not None and x not in ("highest", "steps")
        }
        if self.common_random_numbers:
            how["common_random_numbers"] = True
        if self.trajectory_metrics != ("loss",):
            how["trajectory_metrics"] = list(self.trajectory_metrics)
        if self.weight_averaging is not None:
            how["weight_averaging"] = self.weight_averaging
        return {
            **how,
            "name": self.name,
            "optimizers": [_optimizer_table(o) for o in self.optimizers],
            "batch_sizes": list(self.batch_sizes),
            **({} if self.search else {"learning_rates": list(self.learning_rates)}),
            "seeds": seeds,
            "seed": self.seed,
            "backend": self.backend,
            "device": self.device,
            "chunk_size": self.chunk_size,
            "trajectory_every": self.trajectory_every,
            "problems": [{"kind": p.kind, **_canonical(dict(p.params))} for p in self.problems],
            "target": _target_table(self.target),
            "schedules": [_schedule_table(s) for s in self.schedules],
            **({"search": _search_table(self.search)} if self.search else {}),
        }

    def to_toml(self) -> str:
        """Write the spec as TOML text; :func:`loads` reads it back to an equal spec."""
        return dumps(self.to_dict())

    def hash(self) -> str:
        """SHA-256 of the canonical JSON form of :meth:`to_dict` (comments and order ignored)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def problem_names(self) -> tuple[str, ...]:
        """The names of the problems, in spec order."""
        return tuple(p.name for p in self.problems)


# ---------------------------------------------------------------------------------------------
# Python route


def sweep_spec(
    problems: Any,
    optimizers: Any,
    batch_sizes: Any,
    learning_rates: Any,
    seeds: Any,
    target: tgt.Target | None = None,
    *,
    schedules: Any = None,
    seed: int = 0,
    backend: str = "rust",
    device: str = "cpu",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    trajectory_every: int = 0,
    name: str = "sweep",
    dtype: str | None = None,
    precision: str = "highest",
    mode: str = "steps",
    common_random_numbers: bool = False,
    trajectory_metrics: Any = ("loss",),
    weight_averaging: float | None = None,
    search: srch.Search | None = None,
) -> SweepSpec:
    """Build a validated :class:`SweepSpec` from Python objects (the same checks as a TOML file).

    Args:
        problems: :class:`ProblemSpec` values (see :func:`problem`), or ``Nqm``/``DoubleWell``
            problems (their arrays are written out as lists); one or a list.
        optimizers: optimizer specs (:mod:`critbatch.optimizers`) or names; one or a list.
        batch_sizes: positive integers.
        learning_rates: positive numbers (``None`` with ``search``).
        seeds: a number of replicates, or a list of replicate ids.
        target: the stopping rule (default: :func:`critbatch.targets.target`, a budget only).
        schedules: one :class:`critbatch.schedules.Schedule` or a list (constant by default).
        seed: the sweep seed.
        backend: ``"rust"`` or ``"torch"``.
        device: the torch device.
        chunk_size: runs per stored chunk (the unit of resumption).
        trajectory_every: record the loss every this many steps (0: none).
        name: a label for reports.
        dtype: the float type runs compute in (``None``: the default per problem).
        precision: ``"highest"``, ``"tf32"`` or ``"bf16"`` (torch backend).
        mode: ``"steps"`` or ``"exact_jumps"`` (:data:`critbatch.plan.MODES`).
        common_random_numbers: runs that differ only in optimizer, schedule or learning rate
            share their random numbers (:mod:`critbatch.plan`).
        trajectory_metrics: what a trajectory records, ``"loss"`` and/or ``"grad_norm"``
            (:data:`critbatch.plan.TRAJECTORY_METRICS`).
        weight_averaging: the decay in (0, 1) of the weight average that the checks read (torch
            backend; ``None``: none; :mod:`critbatch.plan`).
        search: a quasi-random search (:class:`critbatch.search.Search`, the ``[search]``
            table) instead of ``learning_rates`` (then ``None``).

    Returns:
        The spec; :meth:`SweepSpec.to_toml` writes it as a file.

    Raises:
        SpecError: naming the key path and the reason.

    Example:
        >>> import critbatch as cb
        >>> s = sweep_spec(problem("nqm_power_law", dim=4), ["sgd", "adam"], [1, 8], [0.1], 2,
        ...                cb.targets.target(loss_below=0.1, max_steps=100))
        >>> len(s.to_plan()), loads(s.to_toml()) == s
        (8, True)

    """
    if target is not None and not isinstance(target, tgt.Target):
        raise SpecError(
            "<python>", "target", f"must be a critbatch Target, got {type(target).__name__}"
        )
    data: dict[str, Any] = {
        "name": name,
        "problems": [
            _problem_table("<python>", f"problems[{i}]", p)
            for i, p in enumerate(_listify(problems))
        ],
        "optimizers": [
            _optimizer_table(o) if isinstance(o, opt.Optimizer) else o for o in _listify(optimizers)
        ],
        "batch_sizes": _plain_list(batch_sizes),
        **({} if learning_rates is None else {"learning_rates": _plain_list(learning_rates)}),
        **({} if search is None else {"search": search}),
        "seeds": seeds if isinstance(seeds, (int, np.integer)) else _plain_list(seeds),
        "seed": seed,
        "backend": backend,
        "device": device,
        "chunk_size": chunk_size,
        "trajectory_every": trajectory_every,
        "target": _target_table(target if target is not None else tgt.target()),
        **({"dtype": dtype} if dtype is not None else {}),
        **({"precision": precision} if precision != "highest" else {}),
        **({"mode": mode} if mode != "steps" else {}),
        **(
            {"common_random_numbers": common_random_numbers}
            if common_random_numbers is not False
            else {}
        ),
        **(
            {"trajectory_metrics": _plain_list(trajectory_metrics)}
            if trajectory_metrics != ("loss",)
            else {}
        ),
        **({"weight_averaging": weight_averaging} if weight_averaging is not None else {}),
    }
    if schedules is not None:
        data["schedules"] = [
            _schedule_table(s) if isinstance(s, sch.Schedule) else s for s in _listify(schedules)
        ]
    return from_dict(data, file="<python>")


def _listify(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _plain_list(value: Any) -> Any:
    arr = np.asarray(value)
    return arr.tolist() if arr.ndim == 1 and arr.dtype != object else value


def _problem_table(file: str, path: str, p: Any) -> dict[str, Any]:
    if isinstance(p, ProblemSpec):
        return {"kind": p.kind, **p.params}
    if isinstance(p, prob.Nqm):
        return {
            "kind": "nqm",
            "h": p.h.tolist(),
            "c": p.c.tolist(),
            "x0": p.x0.tolist(),
            "name": p.name,
        }
    if isinstance(p, prob.DoubleWell):
        return {
            "kind": "double_well",
            "kappa": p.kappa,
            "noise_std": p.noise_std,
            "x0": p.x0.tolist(),
            "dim": p.dim,
            "wall_offset": p.wall_offset,
            "wall_stiffness": p.wall_stiffness,
            "name": p.name,
        }
    if isinstance(p, prob.Network):
        raise SpecError(
            file,
            path,
            "a network problem built in Python cannot be written to a "
            "spec; describe it by name, e.g. critbatch.spec.problem('network', "
            f"model={p.model!r}, data={p.data!r}, ...)",
        )
    if isinstance(p, prob.FiniteSum):
        raise SpecError(
            file,
            path,
            "a finite-sum problem built from arrays cannot be written "
            "to a spec; describe it by its generator, e.g. critbatch.spec.problem("
            f"{p.kind!r}, n=..., d=..., seed=...)",
        )
    raise SpecError(
        file, path, f"must be a ProblemSpec or a critbatch problem, got {type(p).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# TOML route


def load_spec(path: str | os.PathLike[str], *, overrides: Sequence[str] = ()) -> SweepSpec:
    r"""Read and validate a spec file.

    Args:
        path: a TOML file.
        overrides: ``key=value`` assignments applied before validation (see
            :func:`apply_overrides`), as ``critbatch sweep --set`` passes them.

    Returns:
        The validated :class:`SweepSpec`.

    Raises:
        SpecError: for a missing or unreadable file, invalid TOML, or an invalid spec; the message
            names the file, the key path and the reason.

    Example:
        >>> import pathlib, tempfile
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "s.toml"
        >>> _ = f.write_text('optimizers = ["sgd"]\nbatch_sizes = [1]\nlearning_rates = [0.1]\n'
        ...                  '[problem]\nkind = "nqm_power_law"\ndims = 3\n')
        >>> load_spec(f)
        Traceback (most recent call last):
        ...
        critbatch.spec.SpecError: ...s.toml: problem.dims: unknown key; did you mean 'dim'? ...

    """
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(name, "", f"cannot read the spec file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise SpecError(name, "", f"not UTF-8 text ({err.reason})") from None
    return loads(text, file=name, overrides=overrides)


def loads(text: str, *, file: str = "<string>", overrides: Sequence[str] = ()) -> SweepSpec:
    r"""Parse and validate spec TOML text (``file`` only labels the error messages).

    ``overrides`` are ``key=value`` assignments applied first (:func:`apply_overrides`).

    Example:
        >>> s = loads('optimizers = ["sgd"]\nbatch_sizes = [2, 4]\nlearning_rates = [0.5]\n'
        ...           '[problem]\nkind = "nqm_power_law"\ndim = 3\n')
        >>> s.batch_sizes, s.seeds
        ((2, 4), (0,))

    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(file, "", f"not valid TOML ({err})") from None
    return from_dict(apply_overrides(data, overrides) if overrides else data, file=file)


_OVERRIDE_KEY = re.compile(r"[A-Za-z0-9_-]+|\[\d+\]")


def _override_path(assignment: str) -> tuple[list[str | int], Any]:
    """``"problems[0].dim=8"`` -> ``(["problems", 0, "dim"], 8)``; the value is read as TOML."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError("--set", assignment, "expected KEY=VALUE, e.g. target.max_steps=500")
    parts: list[str | int] = []
    for segment in key.split("."):
        tokens = _OVERRIDE_KEY.findall(segment)
        if "".join(tokens) != segment or not tokens or tokens[0].startswith("["):
            raise SpecError(
                "--set",
                key,
                "a key is dotted names with optional [index] "
                "suffixes, e.g. problems[0].dim or target.max_steps",
            )
        parts.extend(int(t[1:-1]) if t.startswith("[") else t for t in tokens)
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word (sgd, cuda:0) is the string it spells
    return parts, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of plain spec data with each ``key=value`` assignment applied, in order.

    A key is a dotted path whose segments may end in list indices (``problems[1].n``,
    ``schedules[0].lr.gamma``); tables along the path are created when missing. The value is
    parsed as a TOML value (``500``, ``[1, 4, 16]``, ``"adam"``, ``{kind = "adam"}``), and a
    bare word that is not valid TOML is taken as a string. The result is validated as usual by
    :func:`from_dict`, so an unknown key is reported with its closest match.

    Raises:
        SpecError: for a malformed assignment or a path through a non-table or past a list's end.

    Example:
        >>> apply_overrides({"target": {"max_steps": 1000}, "seeds": 4},
        ...                 ["target.max_steps=50", "seeds=[0, 2]", "name=quick"])
        {'target': {'max_steps': 50}, 'seeds': [0, 2], 'name': 'quick'}

    """
    out: dict[str, Any] = copy.deepcopy(dict(data))
    for assignment in overrides:
        parts, value = _override_path(assignment)
        node: Any = out
        for depth, part in enumerate(parts):
            where = _path_text(parts[: depth + 1])
            last = depth == len(parts) - 1
            if isinstance(part, int):
                if not isinstance(node, list):
                    raise SpecError(
                        "--set",
                        where,
                        f"{_path_text(parts[:depth]) or 'the spec'} "
                        f"is not a list (it is {type(node).__name__})",
                    )
                if part >= len(node):
                    raise SpecError(
                        "--set", where, f"index out of range: the list has {len(node)} item(s)"
                    )
            elif not isinstance(node, dict):
                raise SpecError(
                    "--set",
                    where,
                    f"{_path_text(parts[:depth])} is not a table "
                    f"(it is {type(node).__name__} {node!r})",
                )
            if last:
                node[part] = value
            elif isinstance(part, str) and part not in node:
                node[part] = {}
            node = node[part]
    return out


def _path_text(parts: Sequence[str | int]) -> str:
    return "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(parts)
    )


def from_dict(data: Mapping[str, Any], *, file: str = "<dict>") -> SweepSpec:
    """Validate plain spec data (as :func:`tomllib.loads` returns it) into a :class:`SweepSpec`."""
    if not isinstance(data, Mapping):
        raise SpecError(file, "", f"a spec must be a table, got {type(data).__name__}")
    _check_keys(file, "", data, _TOP_KEYS)
    if "problem" in data and "problems" in data:
        raise SpecError(file, "problems", "give either [problem] or [[problems]], not both")
    if "problem" in data:
        raw_problems, prefix = [data["problem"]], "problem"
    elif "problems" in data:
        raw_problems, prefix = _require_list(file, "problems", data["problems"]), "problems"
    else:
        raise SpecError(file, "problem", "missing: add a [problem] table or [[problems]] tables")
    problems = tuple(
        _problem_spec(file, prefix if prefix == "problem" else f"problems[{i}]", p)
        for i, p in enumerate(raw_problems)
    )
    for key in ("optimizers", "batch_sizes", *(() if "search" in data else ("learning_rates",))):
        if key not in data:
            raise SpecError(file, key, "missing (required)")
    optimizers = tuple(
        _optimizer(file, f"optimizers[{i}]", o)
        for i, o in enumerate(_require_list(file, "optimizers", data["optimizers"]))
    )
    batch_sizes = tuple(
        _field(file, f"batch_sizes[{i}]", v.positive_int, x)
        for i, x in enumerate(_require_list(file, "batch_sizes", data["batch_sizes"]))
    )
    search = None if "search" not in data else _search(file, data)
    learning_rates = (
        tuple(
            _field(file, f"learning_rates[{i}]", v.positive, x)
            for i, x in enumerate(_require_list(file, "learning_rates", data["learning_rates"]))
        )
        if search is None
        else tuple(float(x) for x in search.points()["learning_rate"])
    )
    raw_seeds = data.get("seeds", 1)
    if isinstance(raw_seeds, list):
        seeds = tuple(
            _field(file, f"seeds[{i}]", v.nonnegative_int, x)
            for i, x in enumerate(_require_list(file, "seeds", raw_seeds))
        )
    else:
        seeds = tuple(range(_field(file, "seeds", v.positive_int, raw_seeds)))
    for key, values in (
        ("batch_sizes", batch_sizes),
        ("learning_rates", learning_rates),
        ("seeds", seeds),
    ):
        if len(set(values)) != len(values):
            raise SpecError(file, key, f"values must be distinct, got {list(values)}")
    # check_every left out: the default of the problems (critbatch.targets), fixed here
    target = _target(file, data.get("target", {})).for_problems(
        network=any(p.kind == "network" for p in problems)
    )
    raw_schedules = data.get("schedules")
    schedules = (
        (sch.Schedule(),)
        if raw_schedules is None
        else tuple(
            _schedule(file, f"schedules[{i}]", s)
            for i, s in enumerate(_require_list(file, "schedules", raw_schedules))
        )
    )
    spec = SweepSpec(
        problems=problems,
        optimizers=optimizers,
        batch_sizes=batch_sizes,
        learning_rates=learning_rates,
        seeds=seeds,
        target=target,
        schedules=schedules,
        search=search,
        seed=_field(file, "seed", v.nonnegative_int, data.get("seed", 0)),
        backend=_field(
            file, "backend", lambda n, x: v.choice(n, x, BACKENDS), data.get("backend", "rust")
        ),
        device=_string(file, "device", data.get("device", "cpu")),
        chunk_size=_field(
            file,
            "chunk_size",
            v.positive_int,
            data.get(
                "chunk_size",
                DEFAULT_CHUNK_SIZE
                if str(data.get("device", "cpu")).startswith("cpu")
                else DEFAULT_GPU_CHUNK_SIZE,
            ),
        ),
        trajectory_every=_field(
            file, "trajectory_every", v.nonnegative_int, data.get("trajectory_every", 0)
        ),
        name=_string(file, "name", data.get("name", "sweep")),
        dtype=None
        if data.get("dtype") is None
        else _field(file, "dtype", lambda n, x: v.choice(n, x, DTYPES), data["dtype"]),
        precision=_field(
            file,
            "precision",
            lambda n, x: v.choice(n, x, PRECISIONS),
            data.get("precision", "highest"),
        ),
        mode=_field(file, "mode", lambda n, x: v.choice(n, x, MODES), data.get("mode", "steps")),
        common_random_numbers=search is not None
        or _field(
            file, "common_random_numbers", _boolean, data.get("common_random_numbers", False)
        ),
        trajectory_metrics=_field(
            file,
            "trajectory_metrics",
            check_trajectory_metrics,
            data.get("trajectory_metrics", ["loss"]),
        ),
        weight_averaging=None
        if data.get("weight_averaging") is None
        else _field(file, "weight_averaging", check_weight_averaging, data["weight_averaging"]),
    )
    if search is not None:
        for path, reason in srch.mismatches(search.space, optimizers, schedules)[:1]:
            raise SpecError(file, path, reason)
    try:  # the cross-field checks of make_plan (unique names, batch vs data size, units, ...)
        plan = spec.to_plan()
    except (ValueError, TypeError) as err:
        raise SpecError(file, "(grid)", str(err)) from None
    try:  # what the backend cannot run (a network or an accuracy target on the core, ...)
        check_backend(plan, spec.backend)
    except ValueError as err:
        raise SpecError(file, "backend", str(err)) from None
    return spec


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, got {value!r}")
    return value


def _field(file: str, path: str, check: Callable[[str, Any], Any], value: Any) -> Any:
    try:
        return check("value", value)
    except (ValueError, TypeError) as err:
        raise SpecError(file, path, str(err)) from None


def _string(file: str, path: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(file, path, f"must be a non-empty string, got {value!r}")
    return value


def _require_list(file: str, path: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise SpecError(file, path, f"must be a list, got {type(value).__name__} {value!r}")
    if not value:
        raise SpecError(file, path, "must not be empty")
    return value


def _require_table(file: str, path: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(file, path, f"must be a table, got {type(value).__name__} {value!r}")
    return value


def did_you_mean(word: object, choices: Sequence[str]) -> str:
    """A ``"; did you mean 'x'?"`` hint naming the closest of ``choices``, or ``""``.

    Example:
        >>> did_you_mean("max_step", ["max_steps", "check_every"])
        "; did you mean 'max_steps'?"
        >>> did_you_mean("zzz", ["max_steps"])
        ''

    """
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_keys(file: str, path: str, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    allowed = list(dict.fromkeys(allowed))  # each key once, in the builder's order
    for key in table:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise SpecError(
                file,
                where,
                f"unknown key{did_you_mean(key, allowed)} (expected one "
                f"of {', '.join(sorted(allowed))})",
            )


def _check_kind(file: str, path: str, kind: Any, kinds: Sequence[str]) -> None:
    if kind not in kinds:
        hint = did_you_mean(kind, kinds) if isinstance(kind, str) else ""
        raise SpecError(
            file, f"{path}.kind", f"must be one of {', '.join(kinds)}, got {kind!r}{hint}"
        )


_Built = TypeVar("_Built")


def _call(file: str, path: str, builder: Callable[..., _Built], kwargs: dict[str, Any]) -> _Built:
    try:
        return builder(**kwargs)
    except (ValueError, TypeError) as err:
        raise SpecError(file, path, str(err)) from None


def _problem_spec(file: str, path: str, raw: Any) -> ProblemSpec:
    table = dict(_require_table(file, path, raw))
    kind = table.pop("kind", None)
    _check_kind(file, path, kind, list(PROBLEM_KINDS))
    builder = PROBLEM_KINDS[kind]
    allowed = [k for k in inspect.signature(builder).parameters] + ["name"]
    _check_keys(file, path, table, allowed)
    for key, value in table.items():
        if not _is_plain(value):
            raise SpecError(
                file,
                f"{path}.{key}",
                "must be a number, string, bool, list of "
                f"numbers or a table of those, got {type(value).__name__}",
            )
    spec = ProblemSpec(kind, _canonical(table))
    try:
        spec.build()
    except (ValueError, TypeError) as err:
        raise SpecError(file, path, str(err)) from None
    return spec


def _is_plain(value: Any, nested: bool = False) -> bool:
    if isinstance(value, (bool, int, float, str, np.integer, np.floating)):
        return True
    if isinstance(value, (list, tuple)):
        kinds = (bool, int, float, np.integer, np.floating) + ((str,) if nested else ())
        return all(isinstance(x, kinds) for x in value)
    if isinstance(value, Mapping) and not nested:  # keyword arguments (a network's model_kwargs)
        return all(isinstance(k, str) and _is_plain(x, nested=True) for k, x in value.items())
    return value is None


def _canonical(value: Any) -> Any:
    """Plain Python values (numpy scalars and tuples converted) with sorted keys."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_canonical(x) for x in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _optimizer(file: str, path: str, raw: Any) -> opt.Optimizer:
    if isinstance(raw, opt.Optimizer):
        return raw
    if isinstance(raw, str):
        try:
            return opt.from_name(raw)
        except ValueError as err:
            hint = did_you_mean(raw, [*OPTIMIZER_NAMES, *_OPTIMIZER_BUILDERS])
            raise SpecError(file, path, f"{err}{hint}") from None
    table = dict(_require_table(file, path, raw))
    kind = table.pop("kind", None)
    _check_kind(file, path, kind, list(_OPTIMIZER_BUILDERS))
    builder = _OPTIMIZER_BUILDERS[kind]
    _check_keys(file, path, table, list(inspect.signature(builder).parameters))
    if "betas" in table:
        if not isinstance(table["betas"], list) or len(table["betas"]) != 2:
            raise SpecError(
                file, f"{path}.betas", f"must be a pair [beta1, beta2], got {table['betas']!r}"
            )
        table["betas"] = tuple(table["betas"])
    return _call(file, path, builder, table)


def _optimizer_table(o: opt.Optimizer) -> dict[str, Any]:
    builder = _OPTIMIZER_BUILDERS[o.kind]
    out: dict[str, Any] = {"kind": o.kind}
    for key in inspect.signature(builder).parameters:
        value = getattr(o, key)
        if value is not None:  # TOML has no null: an unset option is left out
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _rule(file: str, path: str, raw: Any) -> sch.Rule:
    table = dict(_require_table(file, path, raw))
    kind = table.pop("kind", None)
    _check_kind(file, path, kind, list(_RULES))
    builder, keys = _RULES[kind]
    _check_keys(file, path, table, list(keys))
    return _call(file, path, builder, table)


def _rule_table(rule: sch.Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": rule.kind}
    for key, attr in _RULES[rule.kind][1].items():
        out[key] = getattr(rule, attr)
    return out


def _schedule(file: str, path: str, raw: Any) -> sch.Schedule:
    if isinstance(raw, sch.Schedule):
        return raw
    table = _require_table(file, path, raw)
    _check_keys(file, path, table, _SCHEDULE_KEYS)
    kwargs: dict[str, Any] = {}
    for key in ("lr", "batch"):
        if key in table:
            kwargs[key] = _rule(file, f"{path}.{key}", table[key])
    for key in ("max_batch_size", "warmup", "warmup_start"):
        if key in table:
            kwargs[key] = table[key]
    if "name" in table:
        kwargs["name"] = _string(file, f"{path}.name", table["name"])
    return _call(file, path, sch.schedule, kwargs)


def _schedule_table(s: sch.Schedule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": s.name, "lr": _rule_table(s.lr), "batch": _rule_table(s.batch)}
    if s.max_batch_size is not None:
        out["max_batch_size"] = s.max_batch_size
    if s.warmup is not None:
        out["warmup"] = s.warmup
        out["warmup_start"] = s.warmup_start
    return out


def _search(file: str, data: Mapping[str, Any]) -> srch.Search:
    """The ``[search]`` table (or a :class:`critbatch.search.Search`), checked."""
    if "learning_rates" in data:
        raise SpecError(
            file,
            "learning_rates",
            "a [search] draws the learning rates from search.learning_rate; remove learning_rates",
        )
    if data.get("common_random_numbers", True) is not True:
        raise SpecError(
            file,
            "common_random_numbers",
            "a [search] runs its trials with common random numbers (they share their "
            "gradient noise); remove common_random_numbers = false",
        )
    raw = data["search"]
    if isinstance(raw, srch.Search):
        return raw
    table = dict(_require_table(file, "search", raw))
    _check_keys(file, "search", table, _SEARCH_KEYS)
    ranges: dict[str, Any] = {}
    for name in srch.DIMENSIONS:
        if name not in table:
            continue
        path = f"search.{name}"
        dim = _require_table(file, path, table[name])
        _check_keys(file, path, dim, _DIMENSION_KEYS)
        for key in ("low", "high"):
            if key not in dim:
                raise SpecError(file, f"{path}.{key}", "missing (required)")
        if "scale" in dim and dim["scale"] not in srch.SCALES:
            raise SpecError(
                file,
                f"{path}.scale",
                f"must be one of {', '.join(srch.SCALES)}, got {dim['scale']!r}"
                f"{did_you_mean(dim['scale'], srch.SCALES)}",
            )
        ranges[name] = (dim["low"], dim["high"], *([dim["scale"]] if "scale" in dim else []))
    if "learning_rate" not in ranges:
        raise SpecError(file, "search.learning_rate", "missing (required): {low, high}")
    space = _call(file, "search", lambda **r: srch.space(None, **r), ranges)
    kwargs: dict[str, Any] = {k: table[k] for k in ("trials", "method", "seed") if k in table}
    return _call(file, "search", lambda **k: srch.Search(space, **k), kwargs)


def _search_table(s: srch.Search) -> dict[str, Any]:
    dims = {d.name: {"low": d.low, "high": d.high, "scale": d.scale} for d in s.space.dimensions}
    return {"trials": s.trials, "method": s.method, "seed": s.seed, **dims}


def _target(file: str, raw: Any) -> tgt.Target:
    table = dict(_require_table(file, "target", raw))
    _check_keys(file, "target", table, _TARGET_KEYS)
    if "position_below" in table:
        pos = table["position_below"]
        if not isinstance(pos, list) or len(pos) != 2:
            raise SpecError(
                file, "target.position_below", f"must be a pair [coordinate, level], got {pos!r}"
            )
        table["position_below"] = tuple(pos)
    return _call(file, "target", tgt.target, table)


def _target_table(t: tgt.Target) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _TARGET_KEYS:
        value = getattr(t, key)
        if value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


# ---------------------------------------------------------------------------------------------
# A TOML writer for the plain data a spec holds (tables, arrays of tables, scalars, lists).

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return repr(x)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(x) for x in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_scalar(x)}" for k, x in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to TOML")


def dumps(data: Mapping[str, Any]) -> str:
    """Write plain data as TOML: scalars first, then ``[table]`` and ``[[array of tables]]``.

    Tables nested inside tables are written inline (``lr = {kind = "step", ...}``).

    Example:
        >>> print(dumps({"a": 1, "t": {"x": [1.5, 2.0]}, "rows": [{"k": "v"}]}), end="")
        a = 1
        <BLANKLINE>
        [t]
        x = [1.5, 2.0]
        <BLANKLINE>
        [[rows]]
        k = "v"

    """
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((f"[{_key(key)}]", value))
        elif isinstance(value, list) and value and all(isinstance(x, Mapping) for x in value):
            tables.extend((f"[[{_key(key)}]]", x) for x in value)
        else:
            lines.append(f"{_key(key)} = {_scalar(value)}")
    for header, table in tables:
        lines.extend(["", header])
        lines.extend(f"{_key(k)} = {_scalar(x)}" for k, x in table.items())
    return "\n".join(lines) + "\n"
