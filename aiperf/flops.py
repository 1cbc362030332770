"""Analytical FLOP and parameter counts of an architecture, per image.

Convention (the one the score uses): a FLOP is one multiply or one add of the *matrix* arithmetic of the weighted
layers, so a multiply-accumulate is 2 FLOPs. This is the convention of ``torch.utils.flop_counter.FlopCounterMode``,
of MFU figures and of GEMM peaks, which makes score / probed-peak a meaningful efficiency. Element-wise work (batch
norm, ReLU, pooling, additions, bias terms) is a few FLOPs per activation against hundreds per activation for a conv,
is memory-bound, and is not counted.

Forward, per image:

* conv ``k x k``, ``C_in -> C_out``, output ``H_o x W_o``:  ``2 * k^2 * C_in * C_out * H_o * W_o``
* dense ``F_in -> F_out``:                                    ``2 * F_in * F_out``

Backward, per image: a weighted layer computes the gradient of its weights (same cost as its forward) and the
gradient of its input (same cost again), so backward = 2 x forward; except that a layer whose input does not
require a gradient -- the first weighted layer, reading the data directly or through parameter-free layers --
computes no input gradient, so its backward = 1 x forward. Training FLOPs per image = forward + backward.

An evaluated image costs the forward FLOPs; a trained image the training FLOPs (see ``design.md`` section 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiperf.arch import Conv, Dense, Graph

__all__ = [
    "LayerFlops",
    "forward_flops",
    "layer_forward_flops",
    "layer_table",
    "num_params",
    "training_flops",
]


def layer_forward_flops(graph: Graph, nid: int) -> int:
    """Forward FLOPs per image of one node (0 for parameter-free and element-wise layers)."""
    op = graph.nodes[nid].op
    if isinstance(op, Conv):
        c_in = graph.in_shapes(nid)[0][0]
        _, h_out, w_out = graph.shapes[nid]
        return 2 * op.kernel_size * op.kernel_size * c_in * op.out_channels * h_out * w_out
    if isinstance(op, Dense):
        return 2 * graph.in_shapes(nid)[0][0] * op.out_features
    return 0


def _needs_input_grad(graph: Graph) -> dict[int, bool]:
    """For each node, whether its output requires a gradient (some ancestor, or itself, has parameters)."""
    requires: dict[int, bool] = {}
    for nid, node in graph.nodes.items():
        has_params = node.op.num_params(graph.in_shapes(nid), graph.shapes[nid]) > 0
        requires[nid] = has_params or any(requires[i] for i in node.inputs)
    return requires


@dataclass(frozen=True)
class LayerFlops:
    """Per-layer figures, per image."""

    id: int
    kind: str
    forward: int
    backward: int
    params: int

    @property
    def training(self) -> int:
        return self.forward + self.backward


def layer_table(graph: Graph) -> list[LayerFlops]:
    """Forward and backward FLOPs and parameters of every node, in topological order."""
    requires = _needs_input_grad(graph)
    rows = []
    for nid, node in graph.nodes.items():
        fwd = layer_forward_flops(graph, nid)
        input_grad = any(requires[i] for i in node.inputs)
        bwd = fwd * (2 if input_grad else 1)
        rows.append(
            LayerFlops(nid, node.op.kind, fwd, bwd, node.op.num_params(graph.in_shapes(nid), graph.shapes[nid]))
        )
    return rows


def forward_flops(graph: Graph) -> int:
    """Forward FLOPs per image: the cost of evaluating (or inferring on) one image."""
    return sum(layer_forward_flops(graph, nid) for nid in graph.nodes)


def training_flops(graph: Graph) -> int:
    """Forward + backward FLOPs per trained image."""
    return sum(row.training for row in layer_table(graph))


def num_params(graph: Graph) -> int:
    """Trainable parameters (equal to ``sum(p.numel() for p in module.parameters())`` of the built module)."""
    return graph.num_params()
