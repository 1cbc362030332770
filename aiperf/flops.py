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

An evaluated image costs the forward FLOPs; a trained image the training FLOPs (see ``docs/design.md`` section 1).

:func:`aiperf_v1_flops` gives the same figures in AIPerf v1's own convention, only so that reports can print a
number comparable with published AIPerf results; the score never uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiperf.arch import Add, BatchNorm, Conv, Dense, GlobalAvgPool, Graph, MaxPool, ReLU

__all__ = [
    "LayerFlops",
    "V1Flops",
    "aiperf_v1_flops",
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


# -- AIPerf v1's convention ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class V1Flops:
    """Per-image FLOPs as AIPerf v1's profiler counts them (for comparison with published AIPerf results only)."""

    forward: float
    backward: float

    @property
    def training(self) -> float:
        return self.forward + self.backward


_V1_BN_BACKWARD = 29 * 1 + 7  # (29 * n + 7) / n per layer, times n, with AIPerf's n = image_num = 1


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def aiperf_v1_flops(graph: Graph) -> V1Flops:
    """Forward and backward FLOPs per image in AIPerf v1's convention.

    Source: AIPerf's ``scripts/reports/profiler.py`` (AI-HPC-Research-Team/AIPerf, ``cal_trial_flops_per_image``
    and the ``cal_*_flops`` helpers), which ``scripts/reports/score.py`` multiplies by 1,280,000 trained and
    50,000 evaluated images per finished epoch. Its operation weights are add = mul = compare = 1, multiply-
    accumulate = 2, divide = 4, exp = 8. Per layer, with ``n`` the number of elements of the layer's input
    (``H * W * C``), ``k`` the kernel, ``H_o x W_o`` the output map:

    * conv ``C_in -> C_out``: forward ``2 k^2 C_in C_out H_o W_o``; backward ``k^2 C_in C_out (4 H_o W_o + 2)``,
      or ``k^2 C_in C_out (2 H_o W_o + 2)`` for the first conv of the graph (no input gradient). AIPerf squares
      ``H_o``; we use ``H_o W_o``, the same for its square inputs.
    * dense ``F_in -> F_out``: forward ``2 F_in F_out`` plus a softmax counted after *every* dense layer,
      ``8 F_out + (F_out - 1) + 4 F_out`` (exp, sum, divide); backward ``2 (2 F_in F_out) + 2 (F_in + 1) F_out``.
    * batch norm (2-D): forward ``7 n`` (a multiply-accumulate, an add and a divide per element); backward the
      constant ``(29 * n_img + 7) / n_img`` with ``n_img = 1``, that is **36 FLOPs per layer whatever its size**
      (AIPerf's unexplained constant, kept as is). Its 1-D batch norm is not counted.
    * ReLU: ``n`` comparisons. Max pooling: ``n k^2 / s^2`` comparisons (a float). Global average pooling:
      ``(H W - 1) C`` adds and ``C`` divides, ``(H W - 1) C + 4 C`` (an earlier revision of the file weighted
      the divide as a multiply, ``+ C``). Add: ``n`` adds for the first input, whatever the number of inputs.
      None of these has a backward cost.
    * concat, dropout, flatten, average pooling, the input: 0 (AIPerf's graphs have no average pooling).

    Two deviations, both for graphs AIPerf never produced: a ReLU or add on a feature vector counts its ``F``
    elements (AIPerf indexes three dimensions and would fail), and the first conv is the first in canonical
    topological order (AIPerf: the first in its layer list; both are the stem conv). AIPerf also substitutes the
    trial's kernel-size hyperparameter for convs past position 175 of its layer list; here ``graph`` is the graph
    actually trained, with :func:`~aiperf.arch.apply_hyperparameters` already applied, so its kernels are used.
    """
    canon = graph.canonical()
    forward = 0.0
    backward = 0.0
    first_conv = True
    for nid, node in canon.nodes.items():
        op = node.op
        if not node.inputs:  # the input layer
            continue
        in_shape = canon.shapes[node.inputs[0]]
        n = _elements(in_shape)
        if isinstance(op, Conv):
            _, h_out, w_out = canon.shapes[nid]
            weights = op.kernel_size * op.kernel_size * in_shape[0] * op.out_channels
            forward += 2 * weights * h_out * w_out
            backward += weights * ((2 if first_conv else 4) * h_out * w_out + 2)
            first_conv = False
        elif isinstance(op, Dense):
            f_in, f_out = in_shape[0], op.out_features
            forward += 2 * f_in * f_out + (8 * f_out + (f_out - 1) + 4 * f_out)
            backward += 2 * (2 * f_in * f_out) + 2 * (f_in + 1) * f_out
        elif isinstance(op, BatchNorm):
            if len(in_shape) == 3:
                forward += 7 * n
                backward += _V1_BN_BACKWARD
        elif isinstance(op, (ReLU, Add)):
            forward += n
        elif isinstance(op, MaxPool):
            forward += n * op.kernel_size * op.kernel_size / op.stride / op.stride
        elif isinstance(op, GlobalAvgPool):
            c, h, w = in_shape
            forward += (h * w - 1) * c + 4 * c
    return V1Flops(forward=forward, backward=backward)
