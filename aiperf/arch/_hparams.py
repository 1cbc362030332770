"""Hyperparameters that change the architecture itself: dropout before the classifier, kernel size of late convs.

TPE chooses these per trial (as AIPerf did); applying them yields the graph that is actually trained, and FLOPs are
always counted on that graph.
"""

from __future__ import annotations

from aiperf.arch._graph import DEFAULT_LIMITS, ArchLimits, Graph, Node
from aiperf.arch._ops import Conv, Dense, Dropout
from aiperf.errors import ArchError

__all__ = ["apply_hyperparameters", "late_convs"]


def late_convs(graph: Graph) -> list[int]:
    """Spatial convs (kernel > 1) whose output has the graph's smallest conv feature map: the last stage."""
    convs = [
        nid
        for nid, node in graph.nodes.items()
        if isinstance(node.op, Conv) and node.op.kernel_size > 1 and node.op.stride == 1
    ]
    if not convs:
        return []
    smallest = min(graph.shapes[n][1] * graph.shapes[n][2] for n in convs)
    return [n for n in convs if graph.shapes[n][1] * graph.shapes[n][2] == smallest]


def apply_hyperparameters(
    graph: Graph,
    dropout: float | None = None,
    kernel_size: int | None = None,
    limits: ArchLimits | None = DEFAULT_LIMITS,
) -> Graph:
    """Return ``graph`` with architecture hyperparameters applied.

    Args:
        dropout: rate of a dropout layer right before the classifier (inserted if absent, removed if 0);
            existing dropout layers elsewhere are set to the same rate.
        kernel_size: odd kernel size for the stride-1 spatial convs of the last stage (padding keeps the size).
    """
    ed = graph.edit()
    changed: dict[str, object] = {}
    if kernel_size is not None:
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ArchError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        for nid in late_convs(graph):
            op = graph.nodes[nid].op
            assert isinstance(op, Conv)
            ed.replace_op(nid, Conv(op.out_channels, kernel_size, op.stride, kernel_size // 2, op.bias))
        changed["kernel_size"] = kernel_size
    if dropout is not None:
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ArchError(f"dropout must be in [0, 1), got {dropout!r}")
        rate = float(dropout)
        for nid, node in list(ed.nodes.items()):
            if isinstance(node.op, Dropout):
                ed.replace_op(nid, Dropout(rate))
        head = graph.nodes[graph.output]
        if isinstance(head.op, Dense):
            feeding = head.inputs[0]
            if isinstance(graph.nodes[feeding].op, Dropout):
                if rate == 0.0:  # drop the layer altogether
                    ed.rewire(feeding, graph.nodes[feeding].inputs[0])
                    del ed.nodes[feeding]
            elif rate > 0.0:
                drop = ed.add(Dropout(rate), feeding)
                ed.nodes[graph.output] = Node(graph.output, head.op, (drop,))
        changed["dropout"] = rate
    ed.output = graph.output
    return ed.build({"op": "hparams", **changed} if changed else None, limits)
