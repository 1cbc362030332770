"""Seed architectures: ResNet-style families for any input size, channel count and class count.

``resnet`` follows He et al. (2016) with the stride on the 3x3 conv of a bottleneck (the "v1.5" variant most
frameworks ship). The stem adapts to the input: a 7x7/2 conv and 3x3/2 max pooling for large images (ImageNet), a
single 3x3/1 conv for small ones (CIFAR-10, digits). A stage downsamples by 2 only while the feature map is at
least 2 pixels wide, so deep families stay valid on 8x8 inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiperf.arch._graph import DEFAULT_LIMITS, ArchLimits, Graph, GraphEditor
from aiperf.arch._ops import Add, BatchNorm, Conv, Dense, GlobalAvgPool, MaxPool, ReLU, Shape
from aiperf.errors import ArchError

__all__ = ["SEEDS", "resnet", "seed"]

_LARGE_INPUT = 64  # inputs at least this wide get the ImageNet stem


def _conv_bn(ed: GraphEditor, src: int, channels: int, kernel: int, stride: int, relu: bool) -> int:
    out = ed.add(Conv(out_channels=channels, kernel_size=kernel, stride=stride, padding=kernel // 2), src)
    out = ed.add(BatchNorm(), out)
    return ed.add(ReLU(), out) if relu else out


def resnet(
    input_shape: Sequence[int] = (3, 224, 224),
    num_classes: int = 1000,
    blocks: Sequence[int] = (2, 2, 2, 2),
    block: str = "basic",
    width: int = 64,
    limits: ArchLimits | None = DEFAULT_LIMITS,
    stride_on_3x3: bool = True,
) -> Graph:
    """A ResNet with ``len(blocks)`` stages of ``blocks[i]`` residual blocks.

    Args:
        input_shape: (C, H, W) of one image.
        num_classes: size of the output logits.
        blocks: residual blocks per stage; stage ``i`` has ``width * 2**i`` channels (x4 at a bottleneck's output).
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1, 3x3, 1x1).
        width: channels of the stem and the first stage.
        stride_on_3x3: where a downsampling bottleneck strides: on its 3x3 conv (v1.5, the default) or on its
            first 1x1 conv (the original v1, as AIPerf's own ResNet-50 seed).
    """
    if block not in ("basic", "bottleneck"):
        raise ArchError(f"resnet block must be 'basic' or 'bottleneck', got {block!r}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ArchError(f"resnet input_shape must be (C, H, W) of positive sizes, got {list(input_shape)}")
    if not blocks or min(blocks) < 1 or width < 1 or num_classes < 1:
        raise ArchError("resnet needs at least one stage, one block per stage, width >= 1 and num_classes >= 1")
    ed = GraphEditor(input_shape=tuple(input_shape))
    size = min(input_shape[1], input_shape[2])
    x = ed.input_id
    if size >= _LARGE_INPUT:
        x = _conv_bn(ed, x, width, 7, 2, relu=True)
        x = ed.add(MaxPool(kernel_size=3, stride=2, padding=1), x)
        size = (size + 1) // 2
        size = (size + 1) // 2
    else:
        x = _conv_bn(ed, x, width, 3, 1, relu=True)
    expansion = 4 if block == "bottleneck" else 1
    channels_in = width
    for stage, count in enumerate(blocks):
        mid = width * 2**stage
        out_channels = mid * expansion
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 and size >= 2 else 1
            if stride == 2:
                size = (size + 1) // 2
            if block == "basic":
                y = _conv_bn(ed, x, mid, 3, stride, relu=True)
                y = _conv_bn(ed, y, out_channels, 3, 1, relu=False)
            else:
                first, second = (1, stride) if stride_on_3x3 else (stride, 1)
                y = _conv_bn(ed, x, mid, 1, first, relu=True)
                y = _conv_bn(ed, y, mid, 3, second, relu=True)
                y = _conv_bn(ed, y, out_channels, 1, 1, relu=False)
            shortcut = x
            if stride != 1 or channels_in != out_channels:
                shortcut = _conv_bn(ed, x, out_channels, 1, stride, relu=False)
            x = ed.add(ReLU(), ed.add(Add(), y, shortcut))
            channels_in = out_channels
    x = ed.add(GlobalAvgPool(), x)
    ed.add(Dense(out_features=num_classes), x)
    name = f"resnet-{block}-{'-'.join(map(str, blocks))}-w{width}"
    return ed.build({"op": "seed", "name": name}, limits=limits)


# name -> (blocks, block, width); width may be overridden by the caller.
SEEDS: dict[str, tuple[tuple[int, ...], str, int]] = {
    "resnet-tiny": ((1, 1, 1), "basic", 16),
    "resnet-small": ((2, 2, 2), "basic", 16),
    "resnet18": ((2, 2, 2, 2), "basic", 64),
    "resnet34": ((3, 4, 6, 3), "basic", 64),
    "resnet50": ((3, 4, 6, 3), "bottleneck", 64),
    "resnet101": ((3, 4, 23, 3), "bottleneck", 64),
}


def seed(
    name: str,
    input_shape: Shape = (3, 224, 224),
    num_classes: int = 1000,
    width: int | None = None,
    limits: ArchLimits | None = DEFAULT_LIMITS,
) -> Graph:
    """A named seed (see :data:`SEEDS`) for the given input and class count."""
    if name not in SEEDS:
        raise ArchError(f"unknown seed {name!r} (known: {', '.join(SEEDS)})")
    blocks, block, default_width = SEEDS[name]
    return resnet(input_shape, num_classes, blocks, block, width or default_width, limits)
