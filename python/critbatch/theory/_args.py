"""Argument handling shared by the theory modules: check, broadcast, loop, return.

The conventions every public theory function follows (docs/theory/README.md states them for
users):

* A parameter is a number or an array of numbers; the parameters of one call broadcast against
  each other by NumPy's rules. All scalars in: a Python ``float`` (or ``int``) out; any array in:
  an array shaped like the broadcast parameters out.
* Sequence arguments (a spectrum, a schedule with one value per step, a time grid, a measured
  curve, a Hessian) are *core* dimensions: they are not broadcast, and a result that is itself a
  sequence keeps its core dimension last, after the broadcast ones (the gufunc convention).
* A value outside an argument's own domain (a batch size <= 0, a NaN, a momentum of 1) is an
  invalid parameter: ``ValueError`` (``TypeError`` for a non-number) naming the argument, for the
  whole call. Valid parameters at which a formula has no finite value (a batch size at or below a
  pole, a target below a bias floor) give ``inf`` or ``nan`` at that element only, as each
  docstring says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "at_least",
    "in_range",
    "integer",
    "loop",
    "nonnegative",
    "out",
    "positive",
    "real",
]


def _show(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value)


def real(name: str, value: Any, *, allow_inf: bool = False) -> npt.NDArray[np.float64]:
    """Return ``value`` as a float64 array of any shape, rejecting non-numbers and NaN."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise TypeError(f"{name} must be a real number or array, got {value!r}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:  # pragma: no cover - ragged input
        raise TypeError(f"{name} must be a real number or array, got {value!r}") from err
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real number or array, got {value!r}")
    array = array.astype(np.float64, copy=False)
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if np.any(np.isnan(array)):
        raise ValueError(f"{name} must not be NaN, got {_show(value)}")
    if not allow_inf and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {_show(value)}")
    return array


def _first_bad(array: np.ndarray, bad: np.ndarray) -> str:
    return repr(float(array[bad].flat[0]))


def positive(name: str, value: Any, *, allow_inf: bool = False) -> npt.NDArray[np.float64]:
    """Return ``value`` as a float64 array after checking every entry is > 0."""
    array = real(name, value, allow_inf=allow_inf)
    bad = ~(array > 0)
    if np.any(bad):
        raise ValueError(f"{name} must be positive, got {_first_bad(array, bad)}")
    return array


def nonnegative(name: str, value: Any, *, allow_inf: bool = False) -> npt.NDArray[np.float64]:
    """Return ``value`` as a float64 array after checking every entry is >= 0."""
    array = real(name, value, allow_inf=allow_inf)
    bad = array < 0
    if np.any(bad):
        raise ValueError(f"{name} must be non-negative, got {_first_bad(array, bad)}")
    return array


def at_least(name: str, value: Any, low: float) -> npt.NDArray[np.float64]:
    """Return ``value`` as a float64 array after checking every entry is >= ``low``."""
    array = real(name, value)
    bad = array < low
    if np.any(bad):
        raise ValueError(f"{name} must be >= {low:g}, got {_first_bad(array, bad)}")
    return array


def in_range(name: str, value: Any, low: float, high: float) -> npt.NDArray[np.float64]:
    """Return ``value`` as a float64 array after checking ``low <= value < high`` everywhere."""
    array = real(name, value)
    bad = ~((array >= low) & (array < high))
    if np.any(bad):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}), got {_first_bad(array, bad)}")
    return array


def integer(name: str, value: Any, minimum: int = 1) -> npt.NDArray[np.int64]:
    """Return ``value`` as an int64 array after checking integral entries >= ``minimum``.

    Integer dtypes and integral floats are accepted; ``bool`` is not.
    """
    array = real(name, value)
    if np.any(array != np.round(array)):
        raise ValueError(f"{name} must be an integer, got {_show(value)}")
    bad = array < minimum
    if np.any(bad):
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {int(array[bad].flat[0])}")
    return array.astype(np.int64)


def out(array: Any) -> Any:
    """Return a 0-d result as a Python number and any other result as an ndarray."""
    result = np.asarray(array)
    if result.ndim == 0:
        return int(result) if np.issubdtype(result.dtype, np.integer) else float(result)
    return result


def _stack(results: list[Any], shape: tuple[int, ...]) -> Any:
    first = results[0]
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        fields = {
            f.name: _stack([getattr(r, f.name) for r in results], shape)
            for f in dataclasses.fields(first)
        }
        return type(first)(**fields)
    if isinstance(first, tuple):
        return tuple(_stack([r[i] for r in results], shape) for i in range(len(first)))
    stacked = np.asarray(results)
    return stacked.reshape(shape + stacked.shape[1:])


class _Dataclass(Protocol):
    """Any dataclass instance: what :func:`loop` stacks field by field into the same class."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


_Record = TypeVar("_Record", bound=_Dataclass)


# The overloads say what the stacking keeps: an array stays an array, a dataclass keeps its class
# and a pair stays a pair; a number comes back as a number or an array, so only as ``Any``. (No
# catch-all ``Callable[..., Any]``: with it mypy finds every array kernel ambiguous.)
@overload
def loop(kernel: Callable[..., np.ndarray], **arrays: np.ndarray) -> np.ndarray: ...
@overload
def loop(kernel: Callable[..., _Record], **arrays: np.ndarray) -> _Record: ...
@overload
def loop(kernel: Callable[..., tuple[float, float]], **arrays: np.ndarray) -> tuple[Any, Any]: ...
@overload
def loop(kernel: Callable[..., float], **arrays: np.ndarray) -> Any: ...
def loop(kernel: Callable[..., Any], **arrays: np.ndarray) -> Any:
    """Call ``kernel`` with Python scalars once per element of the broadcast ``arrays``.

    All 0-d: one call, its result returned as is. Otherwise the results are stacked with the
    broadcast shape in front: floats into an array, arrays into an array with their own shape
    last, tuples and dataclasses field by field.
    """
    names = list(arrays)
    shape = np.broadcast_shapes(*(np.shape(a) for a in arrays.values()))
    if shape == ():
        return kernel(**{n: np.asarray(a).item() for n, a in arrays.items()})
    flat = [np.broadcast_to(a, shape).ravel() for a in arrays.values()]
    results = [
        kernel(**{n: f[i].item() for n, f in zip(names, flat, strict=True)})
        for i in range(int(np.prod(shape)))
    ]
    return _stack(results, shape)
