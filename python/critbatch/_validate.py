"""Input checks shared by the spec modules: each raises an exception that names the bad field.

Every integer a user writes (seeds, batch sizes, step counts, chunk sizes, thread counts, data
set sizes) goes through :func:`integer` (or its two spellings :func:`positive_int` and
:func:`nonnegative_int`), here and nowhere else, so that the Rust core and the torch backend see
the same values and reject the same ones. Each is bounded above by :data:`MAX_INT`: the results
hold counts and seeds as int64 columns and TOML integers are 64-bit signed, so a larger value
could only wrap around or overflow later, far from the field that caused it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

#: The largest integer any field takes, 2^63 - 1 (int64 columns, TOML integers).
MAX_INT = 2**63 - 1
#: The most worker threads a backend is asked to start.
MAX_THREADS = 4096


def limit_text(limit: int) -> str:
    """``limit`` in digits, with its power-of-two form when it has one (for messages).

    Example:
        >>> limit_text(2**63 - 1), limit_text(2**24), limit_text(1000)
        ('9223372036854775807 (2^63 - 1)', '16777216 (2^24)', '1000')

    """
    if limit > 0 and limit & (limit - 1) == 0:
        return f"{limit} (2^{limit.bit_length() - 1})"
    if limit > 0 and (limit + 1) & limit == 0:
        return f"{limit} (2^{limit.bit_length()} - 1)"
    return str(limit)


def positive(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float after checking it is a finite number > 0."""
    number = real(name, value, allow_inf=allow_inf)
    if not number > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return number


def nonnegative(name: str, value: Any) -> float:
    """Return ``value`` as a float after checking it is a finite number >= 0."""
    number = real(name, value)
    if number < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return number


def real(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float, rejecting bools, strings, NaN and (unless allowed) infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def in_range(name: str, value: Any, low: float, high: float) -> float:
    """Return ``value`` as a float after checking ``low <= value < high``."""
    number = real(name, value)
    if not low <= number < high:
        raise ValueError(f"{name} must be in [{low}, {high}), got {value!r}")
    return number


def integer(name: str, value: Any, *, low: int, high: int = MAX_INT) -> int:
    """Return ``value`` as an int after checking it is an integer in ``[low, high]``.

    Bools, floats (even integral ones) and strings are refused with a ``TypeError``; values out
    of range with a ``ValueError`` that names the field and the bound.

    Example:
        >>> integer("seed", 2**64, low=0)
        Traceback (most recent call last):
        ...
        ValueError: seed must be at most 9223372036854775807 (2^63 - 1), got 18446744073709551616

    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    number = int(value)
    if number < low:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"at least {low}")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if number > high:
        raise ValueError(f"{name} must be at most {limit_text(high)}, got {value!r}")
    return number


def positive_int(name: str, value: Any, *, high: int = MAX_INT) -> int:
    """Return ``value`` as an int after checking ``1 <= value <= high``."""
    return integer(name, value, low=1, high=high)


def nonnegative_int(name: str, value: Any, *, high: int = MAX_INT) -> int:
    """Return ``value`` as an int after checking ``0 <= value <= high``."""
    return integer(name, value, low=0, high=high)


def threads(name: str, value: Any) -> int:
    """Return a positive thread count, at most :data:`MAX_THREADS`."""
    return integer(name, value, low=1, high=MAX_THREADS)


def derived_finite(array: np.ndarray, message: str) -> np.ndarray:
    """Return ``array`` (computed from a user's arguments) after checking it is finite.

    ``message`` names the arguments the user wrote, not the array derived from them.
    """
    if not np.all(np.isfinite(array)):
        raise ValueError(message)
    return array


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Return ``value`` after checking it is one of the ``allowed`` strings."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return str(value)


def float_array(
    name: str, value: Any, *, ndim: int, finite: bool = True
) -> npt.NDArray[np.float64]:
    """Return a read-only C-contiguous float64 copy of ``value`` with ``ndim`` dimensions."""
    array = np.asarray(value)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating)
        or np.issubdtype(array.dtype, np.integer)
        or array.dtype == bool
    ):
        raise TypeError(f"{name} must be a real-valued array, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    out = np.array(array, dtype=np.float64, order="C", copy=True)
    if finite and not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite everywhere")
    out.setflags(write=False)
    return out


def broadcast_vector(name: str, value: Any, dim: int) -> npt.NDArray[np.float64]:
    """Return ``value`` (a scalar or a length-``dim`` vector) as a read-only float64 vector."""
    if np.ndim(value) == 0:
        scalar = real(name, value)
        out = np.full(dim, scalar, dtype=np.float64)
        out.setflags(write=False)
        return out
    out = float_array(name, value, ndim=1)
    if out.shape[0] != dim:
        raise ValueError(f"{name} must have length {dim}, got {out.shape[0]}")
    return out


def real_array(
    name: str,
    value: Any,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    ndim: int | None = None,
) -> npt.NDArray[np.float64]:
    """Return ``value`` (a number or an array of any shape) as a non-empty float64 array.

    Every entry must be finite, and also > 0 with ``positive`` or >= 0 with ``nonnegative``;
    ``ndim``, when given, is the exact number of dimensions.
    """
    if isinstance(value, (bool, str)):
        raise TypeError(f"{name} must be a real number or array, got {value!r}")
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real number or array, got {value!r}") from err
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and np.any(array <= 0):
        raise ValueError(f"{name} must be positive, got {value!r}")
    if nonnegative and np.any(array < 0):
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return array


def real_vector(
    name: str,
    value: Any,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    length: int | None = None,
) -> npt.NDArray[np.float64]:
    """Return ``value`` (a number or a 1-D array) as a non-empty 1-D float64 array.

    The entries are checked as in :func:`real_array`. With ``length``, a single value (a scalar
    or a one-entry array) is repeated ``length`` times and any other length is rejected.
    """
    array = np.atleast_1d(real_array(name, value, positive=positive, nonnegative=nonnegative))
    if array.ndim != 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {array.shape}")
    if length is not None:
        if array.size == 1:
            return np.full(length, array[0])
        if array.size != length:
            raise ValueError(
                f"{name} must have length {length}, got {array.size} "
                f"({name} must be a scalar or a length-{length} vector)"
            )
    return array


def scalar_or_array(array: Any) -> Any:
    """Return a 0-d result as a Python float and anything else unchanged (for vectorized maths)."""
    return float(array) if np.ndim(array) == 0 else array
