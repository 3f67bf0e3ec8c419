r"""Data sets for the real-network problems, all loaded or generated offline.

* :func:`digits`: the 8x8 handwritten digits that scikit-learn ships (1,797 images, 10
  classes; ``sklearn.datasets.load_digits``), pixels scaled from 0..16 to [0, 1], split into
  train and test sets by a seeded permutation.
* :func:`mnist1d`: MNIST-1D (Greydanus 2020, "Scaling down deep learning", arXiv:2011.14439),
  generated with the ``mnist1d`` package's own generator (``mnist1d.data.make_dataset``), which
  runs offline: ten 1-D digit templates are padded, stretched, scaled, translated, given
  correlated and i.i.d. noise, sheared and resampled to 40 points. The package draws from
  NumPy's *global* generator; this loader saves and restores that state (and Python's
  ``random`` state) around the call, so calling it has no side effect on other code.
* :func:`cifar10`: CIFAR-10 from a local copy in the standard "python version" layout
  (``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, each a pickled dict with
  ``b'data'``, a ``uint8`` array of ``N x 3072`` pixels in channel-major order, and
  ``b'labels'``, a list of ``N`` integers in 0..9). Nothing is downloaded.

Every loader returns a :class:`Dataset`: float32 inputs and int64 labels as NumPy arrays, which
the runner moves to its device once. Any other data set enters a sweep by import reference
(``data = "package.module:callable"``; :func:`from_callable` reads what the callable returns).

Example:
    >>> data = digits()
    >>> data.x_train.shape, data.x_test.shape, data.classes
    ((1348, 64), (449, 64), 10)

"""

from __future__ import annotations

import functools
import os
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from critbatch import _validate as v

__all__ = ["LOADERS", "Dataset", "cifar10", "digits", "from_callable", "load", "mnist1d"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set: float32 inputs, int64 labels in ``0..classes-1``.

    Attributes:
        name: a label for result tables.
        x_train: training inputs, shape ``(n_train, *input_shape)``.
        y_train: training labels, shape ``(n_train,)``.
        x_test: test inputs, shape ``(n_test, *input_shape)``.
        y_test: test labels, shape ``(n_test,)``.
        classes: the number of classes.

    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int

    def __post_init__(self) -> None:
        """Check shapes, dtypes and label ranges; store read-only float32/int64 copies."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        classes = v.positive_int("classes", self.classes)
        for split in ("train", "test"):
            x = np.asarray(getattr(self, f"x_{split}"))
            y = np.asarray(getattr(self, f"y_{split}"))
            if x.ndim < 2 or x.shape[0] == 0:
                raise ValueError(f"x_{split} must have shape (n, ...) with n >= 1, got {x.shape}")
            if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
                raise TypeError(f"x_{split} must be numeric, got dtype {x.dtype}")
            if y.shape != (x.shape[0],):
                raise ValueError(f"y_{split} must have shape ({x.shape[0]},), got {y.shape}")
            if not np.issubdtype(y.dtype, np.integer):
                raise TypeError(f"y_{split} must hold integer labels, got dtype {y.dtype}")
            if y.min() < 0 or y.max() >= classes:
                raise ValueError(
                    f"y_{split} must lie in 0..{classes - 1}, got labels in {y.min()}..{y.max()}"
                )
            xf = np.ascontiguousarray(x, dtype=np.float32)
            if not np.isfinite(xf).all():
                raise ValueError(f"x_{split} must be finite everywhere")
            yi = np.ascontiguousarray(y, dtype=np.int64)
            xf.setflags(write=False)
            yi.setflags(write=False)
            object.__setattr__(self, f"x_{split}", xf)
            object.__setattr__(self, f"y_{split}", yi)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"x_test must have inputs of shape {self.x_train.shape[1:]}, got "
                f"{self.x_test.shape[1:]}"
            )
        object.__setattr__(self, "classes", classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        """The number of training examples."""
        return int(self.x_train.shape[0])


def _split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(x.shape[0])
    n_test = round(test_fraction * x.shape[0])
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def digits(*, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Load the scikit-learn 8x8 digits, pixels in [0, 1], split by a seeded permutation.

    Args:
        test_fraction: the share of the 1,797 images held out, in (0, 1).
        seed: the seed of the split.

    Returns:
        A :class:`Dataset` with inputs of shape ``(64,)`` and 10 classes.

    Example:
        >>> d = digits(test_fraction=0.5, seed=1)
        >>> d.n_train + d.x_test.shape[0], float(d.x_train.max())
        (1797, 1.0)

    References:
        Alpaydin & Kaynak 1998, UCI "Optical recognition of handwritten digits" (the data
        scikit-learn ships as ``load_digits``).

    """
    test_fraction = v.in_range("test_fraction", test_fraction, 0.0, 1.0)
    if test_fraction == 0.0:
        raise ValueError("test_fraction must be in (0, 1), got 0.0")
    seed = v.nonnegative_int("seed", seed)
    x, y = _digits_arrays()
    return Dataset("digits", *_split(x, y, test_fraction, seed), classes=10)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def mnist1d(*, num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> Dataset:
    """Generate MNIST-1D offline with the ``mnist1d`` package (its default transformations).

    Args:
        num_samples: examples in total, at least 10 (``num_samples // 10`` per class).
        train_split: the share used for training, in (0, 1).
        seed: the generator's seed (the package's default 42 reproduces its published set).

    Returns:
        A :class:`Dataset` with inputs of shape ``(40,)`` and 10 classes.

    Example:
        >>> d = mnist1d(num_samples=100, seed=3)
        >>> d.x_train.shape, d.x_test.shape
        ((80, 40), (20, 40))

    References:
        Greydanus 2020, "Scaling down deep learning", arXiv:2011.14439 (the generation
        procedure); the ``mnist1d`` package on PyPI (the generator used here).

    """
    num_samples = v.positive_int("num_samples", num_samples)
    if num_samples < 10:
        raise ValueError(f"num_samples must be at least 10 (one per class), got {num_samples}")
    train_split = v.in_range("train_split", train_split, 0.0, 1.0)
    if not 0 < int(num_samples // 10 * 10 * train_split) < num_samples // 10 * 10:
        raise ValueError(
            f"train_split {train_split!r} leaves an empty train or test set "
            f"for num_samples={num_samples}"
        )
    seed = v.nonnegative_int("seed", seed)
    x, y, xt, yt = _mnist1d_arrays(num_samples, train_split, seed)
    return Dataset("mnist1d", x, y, xt, yt, classes=10)


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(num_samples: int, train_split: float, seed: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    args.update(num_samples=num_samples, train_split=train_split, seed=seed)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return (
        data["x"].astype(np.float32),
        data["y"].astype(np.int64),
        data["x_test"].astype(np.float32),
        data["y_test"].astype(np.int64),
    )


CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open("rb") as handle:
        # The standard CIFAR-10 files are pickles; load only copies you trust.
        batch = pickle.load(handle, encoding="bytes")
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(
            f"root: {str(path)!r} is not a CIFAR-10 batch (a dict with b'data' and b'labels')"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"root: b'data' of {str(path)!r} must be uint8 of shape (N, 3072), got "
            f"{data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"root: b'labels' of {str(path)!r} must be {data.shape[0]} integers, "
            f"got {labels.dtype} {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def cifar10(
    root: str | os.PathLike[str],
    *,
    train_batches: int = 5,
    normalize: bool = True,
    limit: int | None = None,
) -> Dataset:
    r"""Load CIFAR-10 from a local copy in the standard python pickle layout.

    Pixels are scaled to [0, 1]; with ``normalize``, each channel is then standardized with the
    mean and standard deviation of the training images that were loaded:
    :math:`x_c \leftarrow (x_c - \mu_c)/s_c`.

    Args:
        root: the folder holding ``data_batch_1``... and ``test_batch`` (or a folder with a
            ``cifar-10-batches-py`` subfolder holding them).
        train_batches: how many of ``data_batch_1..5`` to load, 1 to 5.
        normalize: standardize the channels (statistics of the training images).
        limit: keep only the first ``limit`` images of each split (None: all).

    Returns:
        A :class:`Dataset` with inputs of shape ``(3, 32, 32)`` and 10 classes.

    Raises:
        ValueError: a file is missing or not in the standard format (the message names it).

    Example:
        >>> import pickle, tempfile, pathlib
        >>> import numpy as np
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> rng = np.random.default_rng(0)
        >>> for name in ("data_batch_1", "test_batch"):
        ...     batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
        ...              b"labels": [0, 1, 2, 3]}
        ...     _ = (root / name).write_bytes(pickle.dumps(batch))
        >>> cifar10(root, train_batches=1).x_train.shape
        (4, 3, 32, 32)

    References:
        Krizhevsky 2009, "Learning multiple layers of features from tiny images" (the data set
        and its file format).

    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__}")
    folder = Path(root)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    count = v.positive_int("train_batches", train_batches)
    if count > 5:
        raise ValueError(f"train_batches must be at most 5, got {count}")
    if limit is not None:
        limit = v.positive_int("limit", limit)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    parts = []
    for name in (*CIFAR_TRAIN[:count], CIFAR_TEST):
        path = folder / name
        if not path.is_file():
            raise ValueError(f"root: no CIFAR-10 file {name!r} in {str(folder)!r}")
        parts.append(_read_cifar_batch(path))
    x = np.concatenate([p[0] for p in parts[:-1]])
    y = np.concatenate([p[1] for p in parts[:-1]])
    xt, yt = parts[-1]
    if limit is not None:
        x, y, xt, yt = x[:limit], y[:limit], xt[:limit], yt[:limit]
    x = x.astype(np.float32) / 255.0
    xt = xt.astype(np.float32) / 255.0
    if normalize:
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        std = x.std(axis=(0, 2, 3), keepdims=True)
        std = np.where(std > 0, std, 1.0).astype(np.float32)
        x, xt = (x - mean) / std, (xt - mean) / std
    return Dataset("cifar10", x, y, xt, yt, classes=10)


LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "mnist1d": mnist1d,
    "cifar10": cifar10,
}


def load(name: str, **kwargs: Any) -> Dataset:
    """Load the data set ``name`` (a key of :data:`LOADERS`) with keyword arguments.

    Args:
        name: ``"digits"``, ``"mnist1d"`` or ``"cifar10"`` (which needs ``root=``).
        **kwargs: passed to the loader.

    Returns:
        The :class:`Dataset`.

    Example:
        >>> load("digits").classes
        10

    """
    return LOADERS[v.choice("dataset", name, tuple(LOADERS))](**kwargs)


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_callable(make: Callable[..., Any], kwargs: dict[str, Any], *, label: str) -> Dataset:
    """Call a user's data callable and read what it returns as a :class:`Dataset`.

    The callable returns a :class:`Dataset`, a tuple ``(x_train, y_train, x_test, y_test)`` or
    a dict with those keys and optionally ``classes`` (default: the largest label plus one), as
    NumPy arrays or tensors.

    Args:
        make: the callable (resolved from an import reference: user code).
        kwargs: its keyword arguments (the spec's ``data_kwargs``).
        label: the reference, for messages and the data set's name.

    Returns:
        The validated :class:`Dataset`.

    Raises:
        ValueError: naming ``data`` or ``data_kwargs`` when the call or its result is unusable.

    Example:
        >>> import numpy as np
        >>> def tiny():
        ...     return np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.ones((2, 2)), np.array([1, 0])
        >>> from_callable(tiny, {}, label="my.data:tiny").classes
        2

    """
    try:
        out = make(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"data_kwargs: {label}(**{kwargs!r}) failed: {err}") from None
    if isinstance(out, Dataset):
        return out
    classes = None
    if isinstance(out, dict):
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in out]
        if missing:
            raise ValueError(f"data: {label!r} returned a dict without {missing}")
        parts = [out["x_train"], out["y_train"], out["x_test"], out["y_test"]]
        classes = out.get("classes")
    elif isinstance(out, (tuple, list)) and len(out) == 4:
        parts = list(out)
    else:
        raise ValueError(
            f"data: {label!r} returned a {type(out).__name__}; expected a Dataset, "
            "a tuple (x_train, y_train, x_test, y_test) or a dict with those keys"
        )
    x, y, xt, yt = (_array(p) for p in parts)
    if classes is None:
        labels = [a for a in (y, yt) if a.size]
        classes = int(max(int(a.max()) for a in labels)) + 1 if labels else 1
    name = label.rsplit(":", 1)[-1]
    try:
        return Dataset(name, x, y, xt, yt, classes=classes)
    except (TypeError, ValueError) as err:
        raise ValueError(f"data: {label!r} returned unusable arrays: {err}") from None
