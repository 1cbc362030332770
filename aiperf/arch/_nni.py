"""Import of the AIPerf / NNI network-morphism graph JSON.

The format (NNI's ``graph_to_json``): ``node_list`` holds tensors ``[node_id, shape]`` with channels-last shapes
(``[H, W, C]`` or ``[F]``), ``layer_list`` holds ``[layer_id, [type, input_node(s), output_node, *params]]``. Layer
parameters follow NNI's stub layers:

* ``StubConv2d``: ``input_channels, filters, kernel_size, stride, padding``. NNI's rebuilder ignores the padding
  field and pads ``kernel_size // 2``; so do we.
* ``StubPooling2d``: ``kernel_size, stride, padding`` (max pooling). The padding field is not what the graph's
  rebuilders use: AIPerf's files declare the output of a "same" pooling, ``ceil(d / stride)`` (its 3x3/2 pooling
  of 112 is written with padding 0 and declared 56), as Keras and MindSpore ``pad_mode="same"`` size it. We pick
  the PyTorch padding that gives the declared shape (1 for that pooling; "same" pads 0 before and 1 after, which
  PyTorch cannot express, so windows sit one pixel earlier but the shape and the cost are the same).
* ``StubBatchNormalization2d``: ``num_features``; ``StubDense``: ``input_units, units``; ``StubDropout2d``: ``rate``.
* ``StubAdd`` / ``StubConcatenate`` take a list of input nodes; ``StubReLU``, ``StubFlatten``,
  ``StubGlobalPooling2d``, ``StubSoftmax`` take none. Softmax is dropped: the IR's output is logits.

Every declared channel count and node shape is checked against shape inference, so a file whose numbers disagree
is refused with the layer named rather than built wrong.
"""

from __future__ import annotations

import json
import os
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiperf.arch._graph import DEFAULT_LIMITS, ArchLimits, Graph, Node, _find_cycle, check_text_size
from aiperf.arch._ops import (
    Add,
    BatchNorm,
    Concat,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Input,
    MaxPool,
    Op,
    ReLU,
    Shape,
)
from aiperf.errors import ArchError

__all__ = ["from_nni_json", "load_file", "load_nni", "to_nni_json"]

_SIMPLE = {
    "StubReLU": ReLU,
    "StubFlatten": Flatten,
    "StubGlobalPooling1d": GlobalAvgPool,
    "StubGlobalPooling2d": GlobalAvgPool,
}
_KNOWN = sorted(
    [
        *_SIMPLE,
        "StubConv2d",
        "StubPooling2d",
        "StubBatchNormalization1d",
        "StubBatchNormalization2d",
        "StubDense",
        "StubDropout1d",
        "StubDropout2d",
        "StubAdd",
        "StubConcatenate",
        "StubSoftmax",
    ]
)


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = 8
_REPR.maxstring = 40
_REPR.maxother = 40
_REPR.maxlong = 40


def _show(value: Any) -> str:
    """A short repr for error messages: bounded in depth and length, so hostile input cannot blow up the message."""
    return _REPR.repr(value)


def _ints(values: Sequence[Any], where: str, what: str) -> list[int]:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ArchError(f"{where}: {what} must be integers, got {_show(list(values))}")
    return list(values)


def _nni_shape(shape: Any, where: str) -> Shape:
    """Channels-last NNI shape -> (C, H, W) or (F,)."""
    if not isinstance(shape, list) or len(shape) not in (1, 3):
        raise ArchError(f"{where}: shape must be [H, W, C] or [F], got {_show(shape)}")
    dims = _ints(shape, where, "shape entries")
    if len(dims) == 3:
        return (dims[2], dims[0], dims[1])
    return (dims[0],)


def load_nni(text: str | bytes, limits: ArchLimits | None = DEFAULT_LIMITS) -> Graph:
    """Parse NNI graph JSON text into a :class:`Graph`."""
    check_text_size(text, limits)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ArchError(f"NNI graph is not valid JSON: {exc}") from None
    return from_nni_json(data, limits)


def from_nni_json(data: Any, limits: ArchLimits | None = DEFAULT_LIMITS) -> Graph:
    """Convert a parsed NNI graph JSON object into a validated :class:`Graph`."""
    if not isinstance(data, Mapping):
        raise ArchError(f"NNI graph JSON must be an object, got {type(data).__name__}")
    for key in ("node_list", "layer_list"):
        if not isinstance(data.get(key), list):
            raise ArchError(f"NNI graph JSON needs a list {key!r}")
    node_list: list[Any] = data["node_list"]
    layer_list: list[Any] = data["layer_list"]
    if limits is not None and limits.max_nodes is not None and len(layer_list) + 1 > limits.max_nodes:
        raise ArchError(f"graph has {len(layer_list) + 1} layers, over the ceiling of {limits.max_nodes}")

    declared: dict[int, Shape] = {}
    for i, entry in enumerate(node_list):
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or isinstance(entry[0], bool)
            or not isinstance(entry[0], int)
        ):
            raise ArchError(f"node_list[{i}] must be [node_id, shape], got {_show(entry)}")
        declared[entry[0]] = _nni_shape(entry[1], f"node_list[{i}] (tensor {entry[0]})")

    # Every tensor is produced by at most one layer; the input tensor by none.
    producers: dict[int, tuple[int | str, str, list[int], list[Any]]] = {}
    for i, entry in enumerate(layer_list):
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not isinstance(entry[1], list)
            or len(entry[1]) < 3
            or not isinstance(entry[1][0], str)
        ):
            raise ArchError(f"layer_list[{i}] must be [layer_id, [type, input(s), output, ...]], got {_show(entry)}")
        layer_id: int | str = (
            entry[0] if isinstance(entry[0], int) and not isinstance(entry[0], bool) else _show(entry[0])
        )
        kind, ins, out, *params = entry[1]
        where = f"layer {layer_id} ({kind[:40]})"
        if kind not in _KNOWN:
            raise ArchError(f"{where}: unknown layer type {_show(kind)} (known: {', '.join(_KNOWN)})")
        ins_list = _ints(ins if isinstance(ins, list) else [ins], where, "input nodes")
        (out_id,) = _ints([out], where, "the output node")
        if kind == "StubSoftmax" and len(ins_list) != 1:
            raise ArchError(f"{where}: softmax takes exactly one input tensor, got {len(ins_list)}")
        if out_id in producers:
            raise ArchError(f"{where}: tensor {out_id} is already produced by layer {producers[out_id][0]}")
        for node_id in (*ins_list, out_id):
            if node_id not in declared:
                raise ArchError(f"{where}: tensor {node_id} is not in node_list (dangling edge)")
        producers[out_id] = (layer_id, kind, ins_list, params)

    sources = [n for n in declared if n not in producers]
    if len(sources) != 1:
        raise ArchError(f"NNI graph must have exactly one input tensor, found {sorted(sources)[:10]}")
    input_id = sources[0]
    if len(declared[input_id]) != 3:
        raise ArchError(f"input tensor {input_id} must have shape [H, W, C], got {list(declared[input_id])}")

    # Softmax layers become aliases of their input: the IR outputs logits.
    alias: dict[int, int] = {}
    for out_id, (_, kind, ins_list, _) in producers.items():
        if kind == "StubSoftmax":
            alias[out_id] = ins_list[0]

    def resolve(node_id: int) -> int:
        seen = 0
        while node_id in alias:
            node_id = alias[node_id]
            seen += 1
            if seen > len(alias):
                raise ArchError(f"softmax layers form a cycle at tensor {node_id}")
        return node_id

    shapes: dict[int, Shape] = {input_id: declared[input_id]}
    nodes = [Node(input_id, Input(shape=declared[input_id]), ())]
    pending = {n: p for n, p in producers.items() if n not in alias}
    # Build in dependency order (Kahn's algorithm: linear in layers) so each layer's input shapes are known, which the
    # padding and channel checks need.
    waiting: dict[int, int] = {}
    readers: dict[int, list[int]] = {}
    for out_id, (_, _, raw_ins, _) in pending.items():
        ins_list = [resolve(n) for n in raw_ins]
        waiting[out_id] = sum(1 for n in ins_list if n != input_id)
        for n in ins_list:
            readers.setdefault(n, []).append(out_id)
    ready = sorted(t for t, count in waiting.items() if count == 0)
    ready.reverse()
    while ready:
        out_id = ready.pop()
        layer_id, kind, raw_ins, params = pending.pop(out_id)
        ins_list = [resolve(n) for n in raw_ins]
        where = f"layer {layer_id} ({kind})"
        op = _convert(kind, params, [shapes[n] for n in ins_list], declared[out_id], where)
        shapes[out_id] = op.infer([shapes[n] for n in ins_list], where)
        if shapes[out_id] != declared[out_id]:
            raise ArchError(
                f"{where}: node_list declares tensor {out_id} as {list(declared[out_id])} (C, H, W) but the layer "
                f"gives {list(shapes[out_id])}"
            )
        nodes.append(Node(out_id, op, tuple(ins_list)))
        for reader in readers.get(out_id, ()):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                ready.append(reader)
    if pending:
        # Every tensor has one producer and only the input has none, so what is left waits on itself: a cycle.
        cycle = _find_cycle(set(pending), lambda t: [resolve(n) for n in pending[t][2]])
        path = " -> ".join(f"layer {pending[t][0]} ({pending[t][1]})" for t in cycle)
        raise ArchError(f"NNI graph has a cycle: {path}")

    consumed = {n for node in nodes for n in node.inputs}
    sinks = [node.id for node in nodes if node.id not in consumed]
    if len(sinks) != 1:
        ends = ", ".join(
            f"tensor {t} of layer {producers[t][0]} ({producers[t][1]})" if t in producers else f"tensor {t}"
            for t in sorted(sinks)[:10]
        )
        raise ArchError(
            f"NNI graph must end in exactly one output tensor, found {len(sinks)}: {ends} "
            "(a layer whose output nothing reads does not lead to the output)"
        )
    history = [{"op": "import", "format": "nni"}]
    return Graph(nodes, sinks[0], history, limits)


def _param_ints(params: list[Any], count: int, where: str, names: str) -> list[int]:
    if len(params) < count:
        raise ArchError(f"{where}: expected parameters [{names}], got {_show(params)}")
    return _ints(params[:count], where, names)


def _convert(kind: str, params: list[Any], in_shapes: list[Shape], out_shape: Shape, where: str) -> Op:
    if kind in _SIMPLE:
        return _SIMPLE[kind]()
    if kind == "StubAdd":
        return Add()
    if kind == "StubConcatenate":
        return Concat()
    if kind == "StubConv2d":
        c_in, filters, kernel, stride = _param_ints(params, 4, where, "input_channels, filters, kernel_size, stride")
        if in_shapes and len(in_shapes[0]) == 3 and in_shapes[0][0] != c_in:
            raise ArchError(f"{where}: declares {c_in} input channels but its input has {in_shapes[0][0]}")
        return Conv(out_channels=filters, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=True)
    if kind in ("StubBatchNormalization1d", "StubBatchNormalization2d"):
        (features,) = _param_ints(params, 1, where, "num_features")
        if in_shapes and in_shapes[0][0] != features:
            raise ArchError(f"{where}: declares {features} features but its input has {in_shapes[0][0]}")
        return BatchNorm()
    if kind == "StubDense":
        units_in, units = _param_ints(params, 2, where, "input_units, units")
        if in_shapes and in_shapes[0] != (units_in,):
            raise ArchError(f"{where}: declares {units_in} input units but its input has shape {list(in_shapes[0])}")
        return Dense(out_features=units)
    if kind in ("StubDropout1d", "StubDropout2d"):
        if not params or isinstance(params[0], bool) or not isinstance(params[0], (int, float)):
            raise ArchError(f"{where}: expected a dropout rate, got {_show(params)}")
        if not 0 <= params[0] < 1:  # before float(): an integer beyond any float would overflow
            raise ArchError(f"{where}: dropout rate must be in [0, 1)")
        return Dropout(rate=float(params[0]))
    if kind == "StubPooling2d":
        kernel, stride = _param_ints(params, 2, where, "kernel_size, stride")
        if not in_shapes or len(in_shapes[0]) != 3 or len(out_shape) != 3 or kernel < 1 or stride < 1:
            raise ArchError(f"{where}: pooling needs image input and output shapes, kernel and stride >= 1")
        size, want = in_shapes[0][1], out_shape[1]
        # PyTorch: out = (size + 2 pad - kernel) // stride + 1; the smallest pad giving `want`, in closed form (a
        # hostile kernel of 10^9 must not mean a loop of 10^9), then checked against the rules PyTorch enforces.
        pad = max(0, -((size - kernel - (want - 1) * stride) // 2))
        if kernel > max(2 * size + 1, 7):
            raise ArchError(f"{where}: a {kernel}x{kernel} pooling window is far wider than its {size}-pixel input")
        if pad <= kernel // 2 and (size + 2 * pad - kernel) // stride + 1 == want:
            return MaxPool(kernel_size=kernel, stride=stride, padding=pad)
        raise ArchError(
            f"{where}: no padding makes a {kernel}x{kernel}/{stride} pooling of size {size} give the declared {want}"
        )
    raise ArchError(f"{where}: unknown layer type {kind!r}")  # pragma: no cover - _KNOWN guards this


def to_nni_json(graph: Graph) -> dict[str, Any]:
    """Export ``graph`` in the NNI / AIPerf graph JSON layout (for NNI's tools and for comparison runs).

    Only what NNI can rebuild is exported: convs padded ``kernel_size // 2`` and max pooling whose output is
    the "same" size ``ceil(d / stride)``; anything else (average pooling, other paddings) raises
    :class:`ArchError`.
    """
    canon = graph.canonical()
    node_list: list[list[Any]] = []
    for nid in canon.nodes:
        shape = canon.shapes[nid]
        node_list.append([nid, [shape[1], shape[2], shape[0]] if len(shape) == 3 else [shape[0]]])
    layer_list: list[list[Any]] = []
    adj: dict[str, list[list[int]]] = {str(nid): [] for nid in canon.nodes}
    reverse: dict[str, list[list[int]]] = {str(nid): [] for nid in canon.nodes}
    layer_inputs: dict[str, list[int]] = {}
    layer_outputs: dict[str, list[int]] = {}
    for nid, node in canon.nodes.items():
        if isinstance(node.op, Input):
            continue
        layer_id = len(layer_list)
        ins = list(node.inputs)
        in_shape = canon.shapes[ins[0]]
        where = f"node {nid} ({node.op.kind})"
        op = node.op
        desc: list[Any]
        if isinstance(op, Conv):
            if op.padding != op.kernel_size // 2:
                raise ArchError(f"{where}: NNI pads convs kernel_size // 2, this one pads {op.padding}")
            desc = ["StubConv2d", ins[0], nid, in_shape[0], op.out_channels, op.kernel_size, op.stride, op.padding]
        elif isinstance(op, BatchNorm):
            kind = "StubBatchNormalization2d" if len(in_shape) == 3 else "StubBatchNormalization1d"
            desc = [kind, ins[0], nid, in_shape[0]]
        elif isinstance(op, ReLU):
            desc = ["StubReLU", ins[0], nid]
        elif isinstance(op, MaxPool):
            if canon.shapes[nid][1:] != tuple(-(-d // op.stride) for d in in_shape[1:]):
                raise ArchError(f"{where}: NNI sizes pooling output as ceil(input / stride); this pooling does not")
            desc = ["StubPooling2d", ins[0], nid, op.kernel_size, op.stride, op.padding]
        elif isinstance(op, GlobalAvgPool):
            desc = ["StubGlobalPooling2d", ins[0], nid]
        elif isinstance(op, Flatten):
            desc = ["StubFlatten", ins[0], nid]
        elif isinstance(op, Dense):
            desc = ["StubDense", ins[0], nid, in_shape[0], op.out_features]
        elif isinstance(op, Dropout):
            desc = ["StubDropout2d" if len(in_shape) == 3 else "StubDropout1d", ins[0], nid, op.rate]
        elif isinstance(op, Add):
            desc = ["StubAdd", ins, nid]
        elif isinstance(op, Concat):
            desc = ["StubConcatenate", ins, nid]
        else:
            raise ArchError(f"{where}: NNI's graph format has no {op.kind} layer")
        layer_list.append([layer_id, desc])
        layer_inputs[str(layer_id)] = ins
        layer_outputs[str(layer_id)] = [nid]
        for src in ins:
            adj[str(src)].append([nid, layer_id])
            reverse[str(nid)].append([src, layer_id])
    c, h, w = canon.input_shape
    return {
        "input_shape": [h, w, c],
        "node_list": node_list,
        "layer_list": layer_list,
        "adj_list": adj,
        "reverse_adj_list": reverse,
        "layer_id_to_input_node_ids": layer_inputs,
        "layer_id_to_output_node_ids": layer_outputs,
        "operation_history": [],
        "vis": None,
        "weighted": False,
    }


def load_file(path: str | os.PathLike[str], limits: ArchLimits | None = DEFAULT_LIMITS) -> Graph:
    """Load an architecture file in either format: NNI / AIPerf graph JSON (it has a ``layer_list``) or aiperf's own."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchError(f"cannot read architecture file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return load_nni(text, limits) if '"layer_list"' in text else Graph.loads(text, limits)
