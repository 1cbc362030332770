"""Layer operations of the architecture IR and their shape rules.

A shape is a tuple of ints without the batch dimension: ``(C, H, W)`` for an image tensor, ``(F,)`` for a feature
vector. Every op is a small frozen dataclass holding only what cannot be derived from its inputs' shapes (a conv
stores its output channels, never its input channels), so that changing a producer's width propagates to its
consumers by construction. ``infer`` checks the input shapes and returns the output shape, raising
:class:`~aiperf.errors.ArchError` naming the node on any inconsistency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aiperf.errors import ArchError

__all__ = [
    "OPS",
    "Add",
    "AvgPool",
    "BatchNorm",
    "Concat",
    "Conv",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "Input",
    "MaxPool",
    "Op",
    "ReLU",
    "Shape",
    "op_from_json",
]

Shape = tuple[int, ...]


def _is_image(shape: Shape) -> bool:
    return len(shape) == 3


def _window_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling window (floor mode, as PyTorch)."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class Op:
    """Base of all ops. ``arity`` is the number of inputs (-1: two or more)."""

    kind: ClassVar[str] = ""
    arity: ClassVar[int] = 1
    weighted: ClassVar[bool] = False

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        raise NotImplementedError

    def num_params(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        """Trainable parameters (buffers such as batch-norm running statistics excluded)."""
        return 0

    def to_json(self) -> dict[str, Any]:
        return {"op": self.kind, **dataclasses.asdict(self)}

    def _check_arity(self, shapes: Sequence[Shape], where: str) -> None:
        if self.arity == -1:
            if len(shapes) < 2:
                raise ArchError(f"{where}: {self.kind} needs at least 2 inputs, got {len(shapes)}")
        elif len(shapes) != self.arity:
            raise ArchError(f"{where}: {self.kind} needs {self.arity} input(s), got {len(shapes)}")

    def _image_input(self, shapes: Sequence[Shape], where: str) -> Shape:
        self._check_arity(shapes, where)
        if not _is_image(shapes[0]):
            raise ArchError(f"{where}: {self.kind} needs an image input (C, H, W), got shape {list(shapes[0])}")
        return shapes[0]


def _positive(where: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArchError(f"{where}: {name} must be a positive integer, got {value!r}")


def _non_negative(where: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ArchError(f"{where}: {name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class Input(Op):
    """The graph's single input; ``shape`` is (C, H, W)."""

    kind: ClassVar[str] = "input"
    arity: ClassVar[int] = 0
    shape: tuple[int, ...] = (3, 32, 32)

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        self._check_arity(shapes, where)
        if len(self.shape) != 3:
            raise ArchError(f"{where}: input shape must be [C, H, W], got {list(self.shape)}")
        _positive(where, **{f"shape[{i}]": v for i, v in enumerate(self.shape)})
        return tuple(self.shape)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.kind, "shape": list(self.shape)}


@dataclass(frozen=True)
class Conv(Op):
    """2-D convolution. No bias by default: every conv in a seed is followed by batch norm."""

    kind: ClassVar[str] = "conv"
    weighted: ClassVar[bool] = True
    out_channels: int = 1
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    bias: bool = False

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        _, h, w = self._image_input(shapes, where)
        _positive(where, out_channels=self.out_channels, kernel_size=self.kernel_size, stride=self.stride)
        _non_negative(where, padding=self.padding)
        oh = _window_out(h, self.kernel_size, self.stride, self.padding)
        ow = _window_out(w, self.kernel_size, self.stride, self.padding)
        if oh < 1 or ow < 1:
            raise ArchError(
                f"{where}: kernel {self.kernel_size} with padding {self.padding} does not fit the {h}x{w} input"
            )
        return (self.out_channels, oh, ow)

    def num_params(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        c_in = in_shapes[0][0]
        return self.kernel_size * self.kernel_size * c_in * self.out_channels + (self.out_channels if self.bias else 0)


@dataclass(frozen=True)
class BatchNorm(Op):
    """Batch normalisation over channels (image) or features (vector); affine."""

    kind: ClassVar[str] = "bn"
    weighted: ClassVar[bool] = False

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        self._check_arity(shapes, where)
        return shapes[0]

    def num_params(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return 2 * in_shapes[0][0]


@dataclass(frozen=True)
class ReLU(Op):
    kind: ClassVar[str] = "relu"

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        self._check_arity(shapes, where)
        return shapes[0]


@dataclass(frozen=True)
class _Pool(Op):
    kernel_size: int = 2
    stride: int = 2
    padding: int = 0

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        c, h, w = self._image_input(shapes, where)
        _positive(where, kernel_size=self.kernel_size, stride=self.stride)
        _non_negative(where, padding=self.padding)
        if self.padding > self.kernel_size // 2:
            raise ArchError(f"{where}: padding {self.padding} is larger than half the kernel {self.kernel_size}")
        if self.kernel_size > max(2 * max(h, w) + 1, 7):
            raise ArchError(
                f"{where}: pooling window {self.kernel_size} is far wider than its {h}x{w} input (use global pooling)"
            )
        oh = _window_out(h, self.kernel_size, self.stride, self.padding)
        ow = _window_out(w, self.kernel_size, self.stride, self.padding)
        if oh < 1 or ow < 1:
            raise ArchError(
                f"{where}: pooling window {self.kernel_size} with padding {self.padding} does not fit the {h}x{w} input"
            )
        return (c, oh, ow)


@dataclass(frozen=True)
class MaxPool(_Pool):
    kind: ClassVar[str] = "maxpool"


@dataclass(frozen=True)
class AvgPool(_Pool):
    kind: ClassVar[str] = "avgpool"


@dataclass(frozen=True)
class GlobalAvgPool(Op):
    """Average over H and W: (C, H, W) -> (C,)."""

    kind: ClassVar[str] = "gap"

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        c, _, _ = self._image_input(shapes, where)
        return (c,)


@dataclass(frozen=True)
class Flatten(Op):
    """(C, H, W) -> (C*H*W,); a vector passes through."""

    kind: ClassVar[str] = "flatten"

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        self._check_arity(shapes, where)
        n = 1
        for d in shapes[0]:
            n *= d
        return (n,)


@dataclass(frozen=True)
class Dense(Op):
    """Fully connected layer on a feature vector, with bias."""

    kind: ClassVar[str] = "dense"
    weighted: ClassVar[bool] = True
    out_features: int = 1

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        self._check_arity(shapes, where)
        if len(shapes[0]) != 1:
            raise ArchError(
                f"{where}: dense needs a feature vector, got shape {list(shapes[0])} (insert gap or flatten first)"
            )
        _positive(where, out_features=self.out_features)
        return (self.out_features,)

    def num_params(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return in_shapes[0][0] * self.out_features + self.out_features


@dataclass(frozen=True)
class Dropout(Op):
    kind: ClassVar[str] = "dropout"
    rate: float = 0.0

    def __post_init__(self) -> None:
        # 0 and 0.0 are one rate: store a float so that the JSON form, and so the content hash, is the same.
        if isinstance(self.rate, int) and not isinstance(self.rate, bool):
            object.__setattr__(self, "rate", float(self.rate))

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        self._check_arity(shapes, where)
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0.0 <= self.rate < 1.0:
            raise ArchError(f"{where}: dropout rate must be in [0, 1), got {self.rate!r}")
        return shapes[0]


@dataclass(frozen=True)
class Add(Op):
    """Element-wise sum of two or more tensors of identical shape."""

    kind: ClassVar[str] = "add"
    arity: ClassVar[int] = -1

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        self._check_arity(shapes, where)
        for s in shapes[1:]:
            if s != shapes[0]:
                raise ArchError(f"{where}: add needs inputs of one shape, got {[list(x) for x in shapes]}")
        return shapes[0]


@dataclass(frozen=True)
class Concat(Op):
    """Concatenation along channels (images of one H x W) or features (vectors)."""

    kind: ClassVar[str] = "concat"
    arity: ClassVar[int] = -1

    def infer(self, shapes: Sequence[Shape], where: str) -> Shape:
        self._check_arity(shapes, where)
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes) or any(s[1:] != shapes[0][1:] for s in shapes):
            raise ArchError(
                f"{where}: concat needs inputs that differ only in channels, got {[list(x) for x in shapes]}"
            )
        return (sum(s[0] for s in shapes), *shapes[0][1:])


OPS: dict[str, type[Op]] = {
    cls.kind: cls
    for cls in (Input, Conv, BatchNorm, ReLU, MaxPool, AvgPool, GlobalAvgPool, Flatten, Dense, Dropout, Add, Concat)
}


def op_from_json(record: Mapping[str, Any], where: str) -> Op:
    """Build an op from its JSON object (``{"op": kind, **params}``), rejecting unknown kinds and fields."""
    kind = record.get("op")
    if not isinstance(kind, str):  # a list or object here would not even hash
        raise ArchError(f"{where}: 'op' must be a layer type name, got {type(kind).__name__}")
    if kind not in OPS:
        raise ArchError(f"{where}: unknown layer type {kind!r} (known: {', '.join(sorted(OPS))})")
    cls = OPS[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    params = {k: v for k, v in record.items() if k not in ("op", "id", "inputs", "out_shape")}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ArchError(f"{where}: {kind} has unknown field(s) {unknown} (known: {sorted(fields)})")
    if cls is Input:
        shape = params.get("shape")
        if not isinstance(shape, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape):
            raise ArchError(f"{where}: input shape must be a list of integers [C, H, W], got {shape!r}")
        return Input(shape=tuple(shape))
    for name, value in params.items():
        expected = fields[name].type
        if expected in ("int", int) and (isinstance(value, bool) or not isinstance(value, int)):
            raise ArchError(f"{where}: {kind}.{name} must be an integer, got {value!r}")
        if expected in ("bool", bool) and not isinstance(value, bool):
            raise ArchError(f"{where}: {kind}.{name} must be true or false, got {value!r}")
        if expected in ("float", float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ArchError(f"{where}: {kind}.{name} must be a number, got {value!r}")
    return cls(**params)
