"""The JSON Schema of a sweep spec, generated from the spec's own builders.

Editors use it to complete and check the keys of a spec file: with the Even Better TOML
extension (taplo), a first line ``#:schema ./spec.schema.json`` (a path relative to the spec, or
a URL) attaches it, as the specs in ``examples/specs/`` do. ``critbatch schema`` prints it and
``docs/spec.schema.json`` is its committed copy (a test keeps the two equal).

The schema is derived from the signatures that :mod:`critbatch.spec` validates against (the
problem generators of :data:`critbatch.spec.PROBLEM_KINDS`, the optimizer, schedule-rule and
target builders), so a key the validator accepts is a key the schema offers. It checks shapes,
types, enumerations and defaults; the cross-field rules (a batch size larger than the data set,
an epoch unit on a streamed problem, ...) are the validator's: ``critbatch validate`` runs them.
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from critbatch import problems as prob
from critbatch import schedules as sch
from critbatch import search as srch
from critbatch import spec
from critbatch import targets as tgt
from critbatch.plan import DTYPES, MODES, PRECISIONS, TRAJECTORY_METRICS

__all__ = ["schema_json", "spec_schema"]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_NUMBERS = {"type": "array", "items": {"type": "number"}}

#: Allowed values of string parameters: wherever the name appears, and per builder.
_ENUMS: dict[str, tuple[str, ...]] = {"sampling": prob.SAMPLINGS, "unit": sch.UNITS}
_BUILDER_ENUMS: dict[Callable[..., Any], dict[str, tuple[str, ...]]] = {
    prob.make_robust_regression: {"loss": prob.ROBUST_LOSSES},
}

_TOP: dict[str, tuple[dict[str, Any], str]] = {
    "name": ({"type": "string", "minLength": 1, "default": "sweep"}, "A label for reports."),
    "optimizers": (
        {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/optimizer"}},
        "Optimizers: names (" + ", ".join(spec.OPTIMIZER_NAMES) + ") or tables with a kind "
        "and the hyperparameters of critbatch.optimizers (torch.optim's names).",
    ),
    "batch_sizes": (
        {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "integer", "minimum": 1},
        },
        "Base batch sizes b (samples per step), distinct positive integers.",
    ),
    "learning_rates": (
        {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "number", "exclusiveMinimum": 0},
        },
        "Base learning rates, distinct positive numbers.",
    ),
    "seeds": (
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"type": "integer", "minimum": 0},
                },
            ],
            "default": 1,
        },
        "Replicates per cell: a count n (ids 0..n-1) or a list of replicate ids.",
    ),
    "seed": (
        {"type": "integer", "minimum": 0, "default": 0},
        "The sweep seed; with a run's place in the grid it fixes every random number.",
    ),
    "backend": (
        {"enum": list(spec.BACKENDS), "default": "rust"},
        "rust (the core, CPU) or torch (CPU or GPU, the torch extra).",
    ),
    "device": (
        {"type": "string", "minLength": 1, "default": "cpu"},
        "The torch device (cpu, cuda, cuda:1, ...); the rust backend ignores it.",
    ),
    "dtype": (
        {"enum": list(DTYPES)},
        "The float type runs compute in (default: float64 for synthetic problems, "
        "float32 for networks).",
    ),
    "precision": (
        {"enum": list(PRECISIONS), "default": "highest"},
        "Matrix-product precision of the torch backend: exact, TensorFloat-32 or "
        "bfloat16 autocast.",
    ),
    "mode": (
        {"enum": list(MODES), "default": "steps"},
        "How a run advances between checkpoints: steps, or exact_jumps (the core on the "
        "NQM with SGD, heavy ball or Nesterov: the state drawn from its exact law).",
    ),
    "common_random_numbers": (
        {"type": "boolean", "default": False},
        "Runs that differ only in optimizer, schedule or learning rate share their gradient "
        "noise and minibatch indices (keyed by problem, batch size and replicate).",
    ),
    "weight_averaging": (
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "Decay of an exponentially weighted average of the weights that every check reads "
        "(bias-corrected, Zhang et al. 2024; not with exact jumps). Absent: checks read the "
        "weights.",
    ),
    "chunk_size": (
        {"type": "integer", "minimum": 1, "default": spec.DEFAULT_CHUNK_SIZE},
        "Runs per stored chunk: the unit of resumption.",
    ),
    "trajectory_every": (
        {"type": "integer", "minimum": 0, "default": 0},
        "Record a trajectory every this many steps from step 0 (0: no trajectories).",
    ),
    "trajectory_metrics": (
        {
            "anyOf": [
                {"enum": list(TRAJECTORY_METRICS)},
                {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"enum": list(TRAJECTORY_METRICS)},
                },
            ],
            "default": ["loss"],
        },
        "What a trajectory records: the exact loss and/or grad_norm, the exact full-gradient "
        "norm (computed as final_grad_norm is).",
    ),
    "problem": ({"$ref": "#/$defs/problem"}, "The one problem (or use [[problems]])."),
    "problems": (
        {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/problem"}},
        "Several problems, one [[problems]] table each (or use [problem]).",
    ),
    "target": (
        {"$ref": "#/$defs/target"},
        "When a run counts as done, its step budget and its divergence rule.",
    ),
    "schedules": (
        {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/schedule"}},
        "Learning-rate and batch-size schedules (one constant schedule by default).",
    ),
    "search": (
        {"$ref": "#/$defs/search"},
        "Quasi-random tuning per batch size (critbatch.search): trials, instead of "
        "learning_rates, set the learning rate and the searched hyperparameters of every "
        "optimizer and schedule; the same trials at every batch size, with common random numbers.",
    ),
}

#: The ``[search]`` table: the budget, the sequence, and one range table per dimension.
_SEARCH: dict[str, tuple[dict[str, Any], str]] = {
    "trials": (
        {"type": "integer", "minimum": 1, "default": 16},
        "Trials per batch size (sobol: a power of two).",
    ),
    "method": ({"enum": list(srch.METHODS), "default": "halton"}, "The quasi-random sequence."),
    "seed": ({"type": "integer", "minimum": 0, "default": 0}, "The scrambling's seed."),
    "learning_rate": ({"$ref": "#/$defs/dimension"}, "The base learning rate (required)."),
    "momentum": ({"$ref": "#/$defs/dimension"}, "heavy_ball, nesterov, rmsprop, lars momentum."),
    "beta1": ({"$ref": "#/$defs/dimension"}, "adam, adamw, lamb, lion: betas[0]."),
    "beta2": ({"$ref": "#/$defs/dimension"}, "adam, adamw, lamb, lion: betas[1]."),
    "eps": ({"$ref": "#/$defs/dimension"}, "adam, adamw, rmsprop, lars, lamb: eps."),
    "alpha": ({"$ref": "#/$defs/dimension"}, "rmsprop: the squared-gradient average's decay."),
    "weight_decay": ({"$ref": "#/$defs/dimension"}, "adamw, lars, lamb, lion: weight decay."),
    "warmup": (
        {"$ref": "#/$defs/dimension"},
        "Linear warm-up length in steps, rounded.",
    ),
    "decay_period": (
        {"$ref": "#/$defs/dimension"},
        "The period of every schedule's step or cosine lr rule (every, or period).",
    ),
    "decay_factor": (
        {"$ref": "#/$defs/dimension"},
        "The factor of every schedule's step or cosine lr rule (gamma, or min_factor).",
    ),
}
_DIMENSION: dict[str, tuple[dict[str, Any], str]] = {
    "low": ({"type": "number"}, "The range's lower end."),
    "high": ({"type": "number"}, "The range's upper end (above low)."),
    "scale": (
        {"enum": list(srch.SCALES)},
        "How trials spread over the range (default per dimension: critbatch.search.space).",
    ),
}

_TARGET: dict[str, tuple[dict[str, Any], str]] = {
    "loss_below": ({"type": "number"}, "Done when the exact full loss is <= this."),
    "grad_norm_below": (
        {"type": "number", "exclusiveMinimum": 0},
        "Done when the full-gradient norm is <= this.",
    ),
    "position_below": (
        {
            "type": "array",
            "prefixItems": [{"type": "integer", "minimum": 0}, {"type": "number"}],
            "minItems": 2,
            "maxItems": 2,
        },
        "[coordinate, level]: done when that coordinate of the iterate is < level.",
    ),
    "check_every": (
        {"type": "integer", "minimum": 1},
        "Check the criteria every this many steps (and at step 0). Default: 1, or 10 when "
        "a problem is a network (its check evaluates the model on eval_train examples).",
    ),
    "max_steps": (
        {"type": "integer", "minimum": 1, "default": 10_000},
        "The step budget: a run stops with stop_reason budget after it.",
    ),
    "divergence_factor": (
        {"type": "number", "exclusiveMinimum": 0, "default": 1e6},
        "Diverged when the loss exceeds divergence_factor * max(|loss(x0)|, 1).",
    ),
    "accuracy_above": (
        {"type": "number", "minimum": 0, "maximum": 1},
        "Done when the validation accuracy is >= this (network problems, torch).",
    ),
    "loss_gap_below": (
        {"type": "number", "minimum": 0},
        "Done when loss - f* is <= this, f* the problem's exact minimum.",
    ),
    "max_sfo": (
        {"type": "integer", "minimum": 1},
        "SFO budget (sum of batch sizes): a run stops before the step that would cross it.",
    ),
    "max_epochs": (
        {"type": "number", "exclusiveMinimum": 0},
        "Epoch budget (finite sums): the SFO budget ceil(max_epochs * n).",
    ),
    "name": ({"type": "string"}, "A label for the target."),
}

_SCHEDULE: dict[str, tuple[dict[str, Any], str]] = {
    "name": ({"type": "string", "minLength": 1}, "The schedule's name in the results."),
    "lr": ({"$ref": "#/$defs/rule"}, "Learning-rate factor over time (constant by default)."),
    "batch": ({"$ref": "#/$defs/rule"}, "Batch-size factor over time (constant by default)."),
    "max_batch_size": (
        {"type": "integer", "minimum": 1},
        "A cap on the batch size a growing schedule reaches.",
    ),
    "warmup": (
        {"type": "integer", "minimum": 1},
        "Linear learning-rate warm-up over this many steps (Goyal et al. 2017).",
    ),
    "warmup_start": (
        {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1},
        "The warm-up's starting factor.",
    ),
}


def _summary(obj: Callable[..., Any]) -> str:
    """The first paragraph of a docstring, on one line, without reST markup."""
    doc = inspect.getdoc(obj) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.replace("``", "").replace(":math:", "").replace("`", "")


def _type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of one builder parameter's annotation (``None`` arms dropped)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        schemas = [_type_schema(a) for a in arms]
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return {"type": "object"}
    if origin is list:  # a list of sizes (an optimizer's layers)
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": _type_schema(item), "minItems": 1}
    if origin is tuple:
        items = [_type_schema(a) for a in typing.get_args(annotation)]
        return {
            "type": "array",
            "prefixItems": items,
            "minItems": len(items),
            "maxItems": len(items),
        }
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if annotation in simple:
        return {"type": simple[annotation]}
    return {"anyOf": [{"type": "number"}, _NUMBERS]}  # Any: a scalar or a vector of numbers


def _default(value: Any) -> Any:
    """A JSON-safe default, or ``None`` where there is none to show (None, inf, NaN)."""
    if value is inspect.Parameter.empty or value is None or value == "":
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    return value


def _parameters(
    builder: Callable[..., Any], keys: list[str] | None = None, extra: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """Properties and required keys from a builder's signature (``keys``: those to expose)."""
    hints = typing.get_type_hints(builder)
    signature = inspect.signature(builder).parameters
    properties: dict[str, Any] = {}
    required: list[str] = []
    for key in keys if keys is not None else [*signature, *extra]:
        if key in properties:
            continue
        param = signature.get(key)
        prop = _type_schema(hints.get(key, str))
        enum = _BUILDER_ENUMS.get(builder, {}).get(key, _ENUMS.get(key))
        if enum is not None:
            prop = {"enum": list(enum)}
        if param is None:  # accepted by the spec for every kind (a problem's name)
            properties[key] = {"type": "string", "minLength": 1}
            continue
        default = _default(param.default)
        if default is not None:
            prop["default"] = default
        elif param.default is inspect.Parameter.empty:
            required.append(key)
        elif isinstance(param.default, float):
            prop["description"] = f"default: {param.default}"
        properties[key] = prop
    return properties, required


def _tagged(
    kind: str,
    builder: Callable[..., Any],
    keys: list[str] | None = None,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    properties, required = _parameters(builder, keys, extra)
    return {
        "title": kind,
        "description": _summary(builder),
        "type": "object",
        "properties": {"kind": {"const": kind}, **properties},
        "required": ["kind", *required],
        "additionalProperties": False,
    }


def _table(fields: dict[str, tuple[dict[str, Any], str]], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "type": "object",
        "properties": {k: {**s, "description": d} for k, (s, d) in fields.items()},
        "additionalProperties": False,
    }


def spec_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a sweep spec file.

    Returns:
        The schema as plain data; :func:`schema_json` is its text.

    Example:
        >>> s = spec_schema()
        >>> s["required"], s["else"]
        (['optimizers', 'batch_sizes'], {'required': ['learning_rates']})
        >>> nqm = s["$defs"]["problem"]["oneOf"][0]
        >>> nqm["properties"]["kind"], nqm["required"], nqm["properties"]["p"]
        ({'const': 'nqm_power_law'}, ['kind', 'dim'], {'type': 'number', 'default': 1.0})

    """
    problems = [
        _tagged(kind, builder, extra=("name",)) for kind, builder in spec.PROBLEM_KINDS.items()
    ]
    optimizers = [_tagged(kind, builder) for kind, builder in spec._OPTIMIZER_BUILDERS.items()]
    rules = [
        _tagged(kind, builder, keys=list(keys)) for kind, (builder, keys) in spec._RULES.items()
    ]
    target = _table(_TARGET, _summary(tgt.target))
    schedule = _table(_SCHEDULE, _summary(sch.schedule))
    # An argument added to a builder but not described above is still offered, undescribed.
    for table, builder, keys in (
        (target, tgt.target, spec._TARGET_KEYS),
        (schedule, sch.schedule, spec._SCHEDULE_KEYS),
    ):
        extra = [k for k in keys if k not in table["properties"]]
        if extra:
            table["properties"].update(_parameters(builder, extra)[0])
    top = {k: {**s, "description": d} for k, (s, d) in _TOP.items()}
    top.update({k: {} for k in spec._TOP_KEYS if k not in top})  # accepted, not described here
    return {
        "$schema": _DRAFT,
        "title": "critbatch sweep spec",
        "description": "A sweep: problems x optimizers x schedules x batch sizes x learning "
        "rates x seeds, its target and how to run it (critbatch.spec).",
        "type": "object",
        "properties": top,
        "required": ["optimizers", "batch_sizes"],
        "oneOf": [{"required": ["problem"]}, {"required": ["problems"]}],
        # a search draws the learning rates: learning_rates exactly when there is no [search]
        "if": {"required": ["search"]},
        "then": {"not": {"required": ["learning_rates"]}},
        "else": {"required": ["learning_rates"]},
        "additionalProperties": False,
        "$defs": {
            "problem": {
                "description": "A problem by its generator: kind and arguments.",
                "oneOf": problems,
            },
            "optimizer": {"anyOf": [{"enum": list(spec.OPTIMIZER_NAMES)}, *optimizers]},
            "rule": {
                "description": "A schedule rule: a factor on the base value over time.",
                "oneOf": rules,
            },
            "schedule": schedule,
            "target": target,
            "search": {
                **_table(_SEARCH, _summary(srch.Search)),
                "required": ["learning_rate"],
            },
            "dimension": {
                **_table(_DIMENSION, "A search range: low, high and the scale."),
                "required": ["low", "high"],
            },
        },
    }


def schema_json() -> str:
    """The schema as the text of ``docs/spec.schema.json`` (two-space indent, final newline)."""
    return json.dumps(spec_schema(), indent=2, ensure_ascii=False) + "\n"
