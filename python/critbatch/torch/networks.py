r"""Small networks for the real-data problems: an MLP, a 1-D CNN and a CIFAR-style ResNet.

Each builder returns a fresh ``torch.nn.Module`` mapping a batch of inputs to class logits;
its parameters are drawn from torch's global generator with torch's default initializers
(Kaiming-uniform for ``Linear`` and ``Conv``), so :func:`build` under a fixed seed gives the
same weights on every machine (the runner builds on the CPU and moves the module afterwards).

* :func:`mlp`: ``Linear -> act -> ... -> Linear``, no normalization and no dropout, so it has
  no buffers and runs under ``torch.func.vmap`` (many models at once).
* :func:`cnn1d`: for MNIST-1D signals of shape ``(1, L)``: ``conv(k=5) -> ReLU`` then two
  ``conv(k=3, stride 2) -> ReLU``, global average pooling, and a linear head. No normalization.
* :func:`resnet`: the CIFAR-10 ResNet layout of He et al. 2016 (Sec. 4.2, arXiv:1512.03385):
  a 3x3 stem, three stages of basic blocks (two 3x3 convolutions and an identity or 1x1
  projection shortcut) at widths ``w, 2w, 4w`` with stride 2 between stages, global average
  pooling and a linear head. ``blocks=(3, 3, 3)``, ``width=16`` is ResNet-20; the default
  ``(1, 1, 1)`` is an 8-layer network small enough for quick sweeps.

Warning:
    :func:`resnet` normalizes with ``GroupNorm`` by default (``norm="group"``), not with
    BatchNorm as in He et al.: BatchNorm's statistics depend on the batch size, which would
    change the model itself as the batch size varies, and that is the variable under study.
    ``norm="batch"`` gives the original layout.

Any other model enters a sweep by import reference (``model = "package.module:callable"`` in a
spec; :func:`critbatch.problems.network`): :func:`builder` resolves a name or a reference,
:func:`probe` checks the module once when the spec is built, and :func:`init` draws a replicate's
weights.

Example:
    >>> import torch
    >>> model = build("mlp", in_features=64, hidden=(32,), classes=10)
    >>> model(torch.zeros(5, 64)).shape
    torch.Size([5, 10])

"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from critbatch import _validate as v

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "NORMS",
    "build",
    "builder",
    "cnn1d",
    "default_kwargs",
    "init",
    "mlp",
    "probe",
    "resnet",
]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
NORMS = ("group", "batch", "none")


def _widths(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (int, str)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of positive integers, got {value!r}")
    return tuple(v.positive_int(f"{name}[{i}]", h) for i, h in enumerate(value))


def mlp(
    in_features: int = 64,
    hidden: Sequence[int] = (32,),
    classes: int = 10,
    *,
    activation: str = "relu",
) -> nn.Sequential:
    """Build a fully connected network ``in_features -> hidden... -> classes``.

    Args:
        in_features: the length of a flattened input (64 for the 8x8 digits).
        hidden: the widths of the hidden layers (may be empty: multinomial logistic regression).
        classes: the number of outputs (logits).
        activation: ``"relu"``, ``"tanh"`` or ``"gelu"``.

    Returns:
        The module; it flattens inputs of any trailing shape.

    Example:
        >>> import torch
        >>> sum(p.numel() for p in mlp(64, (32,), 10).parameters())  # 64*32+32 + 32*10+10
        2410

    """
    in_features = v.positive_int("in_features", in_features)
    widths = _widths("hidden", hidden)
    classes = v.positive_int("classes", classes)
    act = ACTIVATIONS[v.choice("activation", activation, tuple(ACTIVATIONS))]
    layers: list[nn.Module] = [nn.Flatten()]
    previous = in_features
    for width in widths:
        layers += [nn.Linear(previous, width), act()]
        previous = width
    layers.append(nn.Linear(previous, classes))
    return nn.Sequential(*layers)


def cnn1d(length: int = 40, channels: int = 32, classes: int = 10) -> nn.Sequential:
    """Build a small 1-D convolutional network for signals ``(1, length)`` (MNIST-1D).

    Args:
        length: the signal length (40 for MNIST-1D); inputs may also come as ``(N, length)``.
        channels: the channels of every convolution.
        classes: the number of outputs.

    Returns:
        The module.

    Example:
        >>> import torch
        >>> cnn1d(40, 8, 10)(torch.zeros(3, 40)).shape
        torch.Size([3, 10])

    """
    length = v.positive_int("length", length)
    if length < 4:
        raise ValueError(f"length must be at least 4 (two stride-2 convolutions), got {length}")
    channels = v.positive_int("channels", channels)
    classes = v.positive_int("classes", classes)
    return nn.Sequential(
        _AsChannels(length),
        nn.Conv1d(1, channels, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(channels, classes),
    )


class _AsChannels(nn.Module):
    """Reshape ``(N, L)`` or ``(N, 1, L)`` inputs to ``(N, 1, L)``."""

    def __init__(self, length: int):
        super().__init__()
        self.length = length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` as one-channel signals."""
        return x.reshape(x.shape[0], 1, self.length)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut: ``relu(norm(conv(relu(norm(conv(x))))) + s(x))``."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=norm == "none")
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none")
        self.norm2 = _norm(norm, cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=norm == "none"), _norm(norm, cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = torch.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def resnet(
    blocks: Sequence[int] = (1, 1, 1),
    width: int = 16,
    classes: int = 10,
    *,
    in_channels: int = 3,
    norm: str = "group",
) -> nn.Sequential:
    """Build a CIFAR-style ResNet (He et al. 2016, Sec. 4.2), ``blocks[i]`` blocks per stage.

    Args:
        blocks: basic blocks in each of the three stages (``(3, 3, 3)``: ResNet-20).
        width: channels of the first stage (the others have ``2w`` and ``4w``).
        classes: the number of outputs.
        in_channels: input image channels (3 for CIFAR-10).
        norm: ``"group"`` (default, see the module's warning), ``"batch"`` or ``"none"``.

    Returns:
        The module, for inputs ``(N, in_channels, H, W)``.

    Example:
        >>> import torch
        >>> resnet((1, 1, 1), 8)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])

    References:
        He, Zhang, Ren, Sun 2016, "Deep residual learning for image recognition", Sec. 4.2,
        arXiv:1512.03385.

    """
    stages = _widths("blocks", blocks)
    if len(stages) != 3:
        raise ValueError(f"blocks must have three stages, got {blocks!r}")
    width = v.positive_int("width", width)
    classes = v.positive_int("classes", classes)
    in_channels = v.positive_int("in_channels", in_channels)
    norm = v.choice("norm", norm, NORMS)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, padding=1, bias=norm == "none"),
        _norm(norm, width),
        nn.ReLU(),
    ]
    cin = width
    for stage, count in enumerate(stages):
        cout = width * 2**stage
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            layers.append(_BasicBlock(cin, cout, stride, norm))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn1d": cnn1d, "resnet": resnet}


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build the network ``name`` (a key of :data:`MODELS`) with keyword arguments.

    Args:
        name: ``"mlp"``, ``"cnn1d"`` or ``"resnet"``.
        **kwargs: passed to the builder.

    Returns:
        A fresh module (parameters from torch's global generator).

    Example:
        >>> type(build("cnn1d")).__name__
        'Sequential'

    """
    return MODELS[v.choice("model", name, tuple(MODELS))](**kwargs)


def builder(model: str) -> Callable[..., nn.Module]:
    """The callable behind a model name: a built-in one, or an import reference (user code).

    Example:
        >>> builder("mlp") is mlp
        True

    """
    if model in MODELS:
        return MODELS[model]
    from critbatch.problems import resolve

    return resolve(model, "model")


def default_kwargs(model: str, input_shape: tuple[int, ...], classes: int) -> dict[str, Any]:
    """The keyword arguments a built-in model takes from the data (none for a reference).

    Example:
        >>> default_kwargs("mlp", (8, 8), 10)
        {'in_features': 64, 'classes': 10}

    """
    size = 1
    for d in input_shape:
        size *= d
    if model == "mlp":
        return {"in_features": size, "classes": classes}
    if model == "cnn1d":
        return {"length": size, "classes": classes}
    if model == "resnet":
        return {"in_channels": input_shape[0], "classes": classes}
    return {}


def init(model: str, kwargs: dict[str, Any], seed: int) -> nn.Module:
    """Build the model on the CPU with torch's generator seeded by ``seed`` (global state kept).

    Example:
        >>> a, b = init("mlp", {"hidden": (4,)}, 1), init("mlp", {"hidden": (4,)}, 1)
        >>> bool(all((x == y).all() for x, y in zip(a.parameters(), b.parameters())))
        True

    """
    make = builder(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            module = make(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"model_kwargs: {model}(**{kwargs!r}) failed: {err}") from None
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"model: {model!r} returned a {type(module).__name__}, not a torch.nn.Module"
        )
    return module


def probe(model: str, kwargs: dict[str, Any], x: Any, classes: int) -> tuple[int, ...]:
    """Build the model once, check it maps inputs to ``(batch, classes)`` logits; size parameters.

    Args:
        model: a built-in name or an import reference.
        kwargs: its keyword arguments.
        x: a few inputs (NumPy, float32).
        classes: the number of classes of the data.

    Returns:
        The size of each parameter tensor, in ``named_parameters()`` order, which is the order
        of the flattened iterate (their sum is its length).

    Raises:
        ValueError: naming ``model`` or ``model_kwargs``.

    Example:
        >>> import numpy as np
        >>> probe("mlp", {"in_features": 4, "hidden": (), "classes": 3}, np.zeros((2, 4)), 3)
        (12, 3)

    """
    module = init(model, kwargs, 0)
    params = [p for p in module.parameters()]
    if not params:
        raise ValueError(f"model: {model!r} has no parameters to train")
    inputs = torch.tensor(np.array(x, dtype=np.float32))
    try:
        with torch.no_grad():
            out = module.eval()(inputs)
    except Exception as err:  # user code: report it as one line
        raise ValueError(
            f"model: {model!r} fails on inputs of shape {tuple(inputs.shape[1:])} "
            f"({type(err).__name__}: {err})"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (inputs.shape[0], classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model: {model!r} maps {inputs.shape[0]} inputs to {shape}, expected "
            f"logits of shape ({inputs.shape[0]}, {classes})"
        )
    return tuple(int(p.numel()) for p in params)
