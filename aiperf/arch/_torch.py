"""Build a ``torch.nn.Module`` from a :class:`~aiperf.arch.Graph`.

The module runs the graph's nodes in topological order and frees each intermediate tensor after its last
consumer, so a wide DAG costs no more activation memory than PyTorch's autograd keeps anyway. It uses only
standard layers, so it works with ``channels_last``, ``torch.autocast`` and ``torch.compile``. Weights are freshly
initialised (He-normal convs, unit batch norm): every model is trained from scratch.
"""

from __future__ import annotations

import torch
from torch import nn

from aiperf.arch._graph import ArchLimits, Graph
from aiperf.arch._ops import (
    Add,
    AvgPool,
    BatchNorm,
    Concat,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Input,
    MaxPool,
    ReLU,
)
from aiperf.errors import ArchError

__all__ = ["GraphModule", "build_module"]


class GraphModule(nn.Module):
    """A graph as a module. ``layers[str(node_id)]`` holds each node's layer (parameter-free ops have none)."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.layers = nn.ModuleDict()
        last_use: dict[int, int] = {}
        order = list(graph.nodes)
        for step, nid in enumerate(order):
            for src in graph.nodes[nid].inputs:
                last_use[src] = step
        # (node id, kind, input ids, ids to free after this step)
        self._plan: list[tuple[int, str, tuple[int, ...], tuple[int, ...]]] = []
        for step, nid in enumerate(order):
            node = graph.nodes[nid]
            in_shapes = graph.in_shapes(nid)
            layer = _make_layer(node.op, in_shapes)
            if layer is not None:
                self.layers[str(nid)] = layer
            free = tuple(src for src in set(node.inputs) if last_use[src] == step and src != graph.output)
            self._plan.append((nid, node.op.kind, node.inputs, free))
        self._input = graph.input_id
        self._output = graph.output
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {self._input: x}
        for nid, kind, inputs, free in self._plan:
            if kind == "input":
                continue
            if kind == "add":
                out = values[inputs[0]]
                for src in inputs[1:]:
                    out = out + values[src]
            elif kind == "concat":
                out = torch.cat([values[src] for src in inputs], dim=1)
            elif kind == "gap":
                out = torch.flatten(nn.functional.adaptive_avg_pool2d(values[inputs[0]], 1), 1)
            elif kind == "flatten":
                out = torch.flatten(values[inputs[0]], 1)
            else:
                out = self.layers[str(nid)](values[inputs[0]])
            for src in free:
                del values[src]
            values[nid] = out
        return values[self._output]


def _make_layer(op: object, in_shapes: list[tuple[int, ...]]) -> nn.Module | None:
    if isinstance(op, Conv):
        return nn.Conv2d(
            in_shapes[0][0], op.out_channels, op.kernel_size, stride=op.stride, padding=op.padding, bias=op.bias
        )
    if isinstance(op, BatchNorm):
        return nn.BatchNorm2d(in_shapes[0][0]) if len(in_shapes[0]) == 3 else nn.BatchNorm1d(in_shapes[0][0])
    if isinstance(op, ReLU):
        return nn.ReLU()
    if isinstance(op, MaxPool):
        return nn.MaxPool2d(op.kernel_size, stride=op.stride, padding=op.padding)
    if isinstance(op, AvgPool):
        return nn.AvgPool2d(op.kernel_size, stride=op.stride, padding=op.padding)
    if isinstance(op, Dense):
        return nn.Linear(in_shapes[0][0], op.out_features)
    if isinstance(op, Dropout):
        return nn.Dropout(op.rate)
    if isinstance(op, (Input, Add, Concat, GlobalAvgPool, Flatten)):
        return None
    raise ArchError(f"no torch layer for op {op!r}")  # pragma: no cover - every op kind is handled above


def build_module(graph: Graph, limits: ArchLimits | None = None) -> GraphModule:
    """Check ``limits`` (before allocating anything) and build a freshly initialised module."""
    if limits is not None:
        graph.check_limits(limits)
    return GraphModule(graph)
