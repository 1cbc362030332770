"""Network-morphism operators: deepen, widen and skip connections (Auto-Keras's moves, on the IR).

Each operator takes a valid graph and returns a new valid graph with the operation appended to its history; an
operation that cannot apply where asked raises :class:`~aiperf.errors.ArchError`. Weights are never inherited
(every candidate is trained from scratch), so the moves are structural: they change what the search explores, not
a trained function.

* **deepen** after an activation: a conv-BN-ReLU block with the same channels (image) or a dense-ReLU block with
  the same width (vector), inserted between the node and all its consumers.
* **widen** a conv (or hidden dense) by ``extra`` output channels. Consumers derive their input width from shapes,
  so a conv or dense downstream absorbs the change; where the wider tensor meets an ``add``, every other operand's
  producing conv is widened by the same amount so the sum stays well-formed.
* **skip**: from an earlier activation ``src`` to a later one ``dst``, an ``add`` (src projected by a strided 1x1
  conv + BN when shapes differ) or a ``concat`` followed by a 1x1 conv-BN-ReLU back to ``dst``'s channels.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from aiperf.arch._graph import DEFAULT_LIMITS, ArchLimits, Graph
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
    MaxPool,
    ReLU,
)
from aiperf.errors import ArchError

__all__ = [
    "MORPHS",
    "add_skip",
    "deepen",
    "deepen_targets",
    "random_morph",
    "skip_sources",
    "skip_targets",
    "widen",
    "widen_targets",
]

MORPHS = ("deepen", "widen", "skip")
_TRANSPARENT = (BatchNorm, ReLU, MaxPool, AvgPool, Dropout)  # ops whose output has their input's channels


# -- deepen -----------------------------------------------------------------------------------------------------
def deepen_targets(graph: Graph) -> list[int]:
    """Nodes after which a block can be inserted: activations and global pooling outputs."""
    return [
        nid for nid, node in graph.nodes.items() if isinstance(node.op, (ReLU, GlobalAvgPool)) and nid != graph.output
    ]


def deepen(graph: Graph, after: int, kernel_size: int = 3, limits: ArchLimits | None = DEFAULT_LIMITS) -> Graph:
    """Insert a conv(kernel_size)-BN-ReLU block (or dense-ReLU for a vector) after node ``after``."""
    if after not in graph.nodes or after in (graph.output, graph.input_id):
        raise ArchError(f"deepen: node {after} is not an inner node of the graph")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ArchError(f"deepen: kernel_size must be odd and positive, got {kernel_size}")
    shape = graph.shapes[after]
    ed = graph.edit()
    first_new = ed.next_id
    if len(shape) == 3:
        x = ed.add(Conv(out_channels=shape[0], kernel_size=kernel_size, stride=1, padding=kernel_size // 2), after)
        x = ed.add(BatchNorm(), x)
        record = {"op": "deepen", "after": after, "kernel_size": kernel_size}
    else:
        x = ed.add(Dense(out_features=shape[0]), after)
        record = {"op": "deepen", "after": after, "units": shape[0]}
    x = ed.add(ReLU(), x)
    ed.rewire(after, x, exclude=ed.added_since(first_new))
    ed.output = graph.output
    return ed.build(record, limits)


# -- widen ------------------------------------------------------------------------------------------------------
def widen_targets(graph: Graph) -> list[int]:
    """Convs and hidden dense layers (not the classifier) that can be widened."""
    out = []
    for nid in graph.nodes:
        if isinstance(graph.nodes[nid].op, (Conv, Dense)) and _widen_set(graph, nid) is not None:
            out.append(nid)
    return out


def _widen_set(graph: Graph, start: int) -> list[int] | None:
    """The convs/denses that must all grow together when ``start`` grows, or None if that is impossible."""
    widen: set[int] = set()
    forward: list[int] = []
    backward: list[int] = [start]
    seen_back: set[int] = set()
    seen_fwd: set[int] = set()
    while backward or forward:
        while backward:
            nid = backward.pop()
            if nid in seen_back:
                continue
            seen_back.add(nid)
            op = graph.nodes[nid].op
            if isinstance(op, (Conv, Dense)):
                if nid not in widen:
                    widen.add(nid)
                    forward.append(nid)
            elif isinstance(op, (*_TRANSPARENT, GlobalAvgPool)):
                backward.append(graph.nodes[nid].inputs[0])
                forward.append(nid)
            elif isinstance(op, Add):
                backward.extend(graph.nodes[nid].inputs)
                forward.append(nid)
            elif isinstance(op, Concat):
                backward.append(graph.nodes[nid].inputs[0])
            else:  # the input, or a flatten (whose width is channels x area)
                return None
        while forward:
            nid = forward.pop()
            if nid in seen_fwd:
                continue
            seen_fwd.add(nid)
            if nid == graph.output:
                return None  # would change the number of classes
            for dst in graph.consumers(nid):
                op = graph.nodes[dst].op
                if isinstance(op, (Conv, Dense)):
                    continue  # absorbs a wider input
                if isinstance(op, Add):
                    backward.extend(i for i in graph.nodes[dst].inputs if i != nid)
                forward.append(dst)
                if isinstance(op, Flatten):
                    # widened channels reach a flatten: fine, the dense after it absorbs any width.
                    continue
    return sorted(widen)


def widen(graph: Graph, target: int, extra: int, limits: ArchLimits | None = DEFAULT_LIMITS) -> Graph:
    """Add ``extra`` output channels (units) to conv/dense ``target`` and to everything tied to it by an add."""
    if target not in graph.nodes or not isinstance(graph.nodes[target].op, (Conv, Dense)):
        raise ArchError(f"widen: node {target} is not a conv or dense layer")
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 1:
        raise ArchError(f"widen: extra must be a positive integer, got {extra!r}")
    group = _widen_set(graph, target)
    if group is None:
        raise ArchError(f"widen: node {target} cannot be widened without changing the input or the class count")
    ed = graph.edit()
    for nid in group:
        op = ed.nodes[nid].op
        if isinstance(op, Conv):
            ed.replace_op(nid, Conv(op.out_channels + extra, op.kernel_size, op.stride, op.padding, op.bias))
        elif isinstance(op, Dense):
            ed.replace_op(nid, Dense(op.out_features + extra))
    return ed.build({"op": "widen", "target": target, "extra": extra, "group": group}, limits)


# -- skip connections -------------------------------------------------------------------------------------------
def skip_targets(graph: Graph) -> list[int]:
    """Image activations that can end a skip connection."""
    return [
        nid
        for nid, node in graph.nodes.items()
        if isinstance(node.op, ReLU) and len(graph.shapes[nid]) == 3 and nid != graph.output
    ]


def _skip_compatible(graph: Graph, src: int, dst: int) -> bool:
    s, d = graph.shapes[src], graph.shapes[dst]
    if len(s) != 3 or len(d) != 3 or d[1] > s[1] or d[2] > s[2]:
        return False
    if s[1] % d[1] or s[2] % d[2]:
        return False
    return s[1] // d[1] == s[2] // d[2]


def skip_sources(graph: Graph, dst: int) -> list[int]:
    """Earlier image activations (or the stem's) that can start a skip connection ending at ``dst``."""
    direct = set(graph.nodes[dst].inputs)
    return sorted(
        nid
        for nid in graph.ancestors(dst)
        if isinstance(graph.nodes[nid].op, ReLU) and nid not in direct and _skip_compatible(graph, nid, dst)
    )


def add_skip(graph: Graph, src: int, dst: int, kind: str = "add", limits: ArchLimits | None = DEFAULT_LIMITS) -> Graph:
    """Connect ``src`` to ``dst`` by an ``add`` or a ``concat``; ``dst``'s consumers then read the merge."""
    if kind not in ("add", "concat"):
        raise ArchError(f"skip: kind must be 'add' or 'concat', got {kind!r}")
    if src not in graph.nodes or dst not in graph.nodes:
        raise ArchError(f"skip: nodes {src} and {dst} must both exist")
    if dst == graph.output or src not in graph.ancestors(dst):
        raise ArchError(f"skip: node {src} is not an earlier node than {dst}")
    if not _skip_compatible(graph, src, dst):
        raise ArchError(
            f"skip: shapes {list(graph.shapes[src])} -> {list(graph.shapes[dst])} are not compatible "
            "(need image tensors with an integer downsampling factor)"
        )
    s_shape, d_shape = graph.shapes[src], graph.shapes[dst]
    stride = s_shape[1] // d_shape[1]
    ed = graph.edit()
    path = src
    want = d_shape[0] if kind == "add" else s_shape[0]
    if stride != 1 or s_shape[0] != want:
        path = ed.add(Conv(out_channels=want, kernel_size=1, stride=stride, padding=0), src)
        path = ed.add(BatchNorm(), path)
    first_new = ed.next_id
    if kind == "add":
        merged = ed.add(Add(), dst, path)
    else:
        cat = ed.add(Concat(), dst, path)
        merged = ed.add(Conv(out_channels=d_shape[0], kernel_size=1, stride=1, padding=0), cat)
        merged = ed.add(BatchNorm(), merged)
        merged = ed.add(ReLU(), merged)
    ed.rewire(dst, merged, exclude=ed.added_since(first_new))
    ed.output = graph.output
    return ed.build({"op": "skip", "kind": kind, "src": src, "dst": dst}, limits)


# -- random moves -----------------------------------------------------------------------------------------------
def random_morph(
    graph: Graph,
    rng: random.Random,
    ops: Sequence[str] = MORPHS,
    limits: ArchLimits | None = DEFAULT_LIMITS,
    attempts: int = 20,
) -> Graph:
    """Apply one randomly chosen legal morph; retries other choices if one breaks ``limits``.

    Deterministic for a given ``rng`` state. Raises :class:`ArchError` if no move fits within ``attempts``.
    Moves are drawn only among the targets each operator lists as legal, so a move that fails for any reason other
    than ``limits`` is a bug and propagates instead of being silently retried.
    """
    unknown = [op for op in ops if op not in MORPHS]
    if unknown or not ops:
        raise ArchError(f"unknown morph {unknown[0] if unknown else None!r} (known: {', '.join(MORPHS)})")
    last_error: ArchError | None = None
    for _ in range(attempts):
        candidate = _propose(graph, rng.choice(list(ops)), rng)
        if candidate is None:
            continue
        if limits is None:
            return candidate
        try:
            candidate.check_limits(limits)
        except ArchError as exc:
            last_error = exc
            continue
        return candidate
    raise ArchError(f"no morph of {list(ops)} applies within the limits ({last_error or 'no candidates'})")


def _propose(graph: Graph, op: str, rng: random.Random) -> Graph | None:
    """One random move of kind ``op`` (built without limits), or None when the graph offers no target for it."""
    if op == "deepen":
        targets = deepen_targets(graph)
        if not targets:
            return None
        return deepen(graph, rng.choice(targets), rng.choice((1, 3, 5)), limits=None)
    if op == "widen":
        targets = [n for n in graph.nodes if isinstance(graph.nodes[n].op, (Conv, Dense))]
        rng.shuffle(targets)
        for target in targets:
            if _widen_set(graph, target) is not None:
                op_ = graph.nodes[target].op
                width = op_.out_channels if isinstance(op_, Conv) else op_.out_features  # type: ignore[attr-defined]
                extra = max(1, int(width * rng.choice((0.25, 0.5, 1.0))))
                return widen(graph, target, extra, limits=None)
        return None
    dsts = skip_targets(graph)
    rng.shuffle(dsts)
    for dst in dsts[:8]:
        srcs = skip_sources(graph, dst)
        if srcs:
            return add_skip(graph, rng.choice(srcs), dst, rng.choice(("add", "concat")), limits=None)
    return None
