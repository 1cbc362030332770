"""An edit distance between architectures, computed for many pairs at once, and the kernel built on it.

Two networks are compared by an edit distance between their *main chains* plus one between their sets of *skip
connections*, the decomposition Auto-Keras (Jin et al., 2019) introduced and AIPerf's network-morphism tuner
inherited. Both parts are derived here on the aiperf IR, from the canonical architecture JSON (so a graph and its
stored form always give the same features):

* **main chain**: the input-to-output path through the most weighted layers (conv, dense); the layer sequence is
  its weighted layers, each described by (kind, width, kernel, stride).
* **skips**: every merge (``add`` / ``concat``) input that is not the merge's main-chain predecessor is a skip from
  the main-chain layer its branch leaves (``src``) to the main-chain position of the merge (``dst``); positions
  count main-chain weighted layers. Skips are sorted by (dst, src, kind).

This project's element costs lie in [0, 1]; inserting or deleting an element costs 1:

* layers: 1 between a conv and a dense; else ``|w1 - w2| / max(w1, w2)`` (width)
  ``+ 0.5 * |k1 - k2| / max(k1, k2)`` (kernel) ``+ 0.5 * [s1 != s2]`` (stride), capped at 1 (dense layers
  are compared by width too);
* skips: 1 between an add and a concat; else
  ``(|src1 - src2| + |dst1 - dst2|) / (max(src1, src2) + max(dst1, dst2))`` (positions counted from 1).

``d(x, y) = layer_edit(x, y) + skip_weight * skip_edit(x, y)``, and the kernel is ``k(x, y) = exp(-d(x, y)^2 /
(2 l^2))`` with a fitted length scale ``l`` (:mod:`aiperf.search._gp`). An edit distance is not a Hilbert metric, so
this kernel is not guaranteed positive definite; :mod:`aiperf.search._gp` repairs the matrix rather than trusting it.

Where the original differs. Its conv-to-conv cost is the *mean* of three relative differences (filters, kernel
size, stride), and two dense layers cost nothing whatever their widths. Its skip cost compares where a skip
*starts* and how *long* it is, ``(|start1 - start2| + |len1 - len2|) / (max(start1, start2) + max(len1, len2))``,
not its two ends; skips are matched by a minimum-cost assignment, each unmatched one costing 1. Its GP has no
single kernel: the training covariance is an RBF kernel over a Bourgain embedding of the distance matrix, while
predictions use ``exp(-d^2)`` of the raw distances. Here one formula serves both, and the skips are matched in
(dst, src) order -- the monotone version of that assignment -- which lets both parts share one vectorised dynamic
programme (thousands of pairs per numpy call, see :func:`edit_distances`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aiperf.arch import Graph

__all__ = [
    "ArchFeatures",
    "arch_distances",
    "edit_distances",
    "features_from_graph",
    "features_from_json",
    "kernel_matrix",
]

_WEIGHTED = {"conv": 0.0, "dense": 1.0}
_MERGES = {"add": 0.0, "concat": 1.0}
_CHUNK_ELEMENTS = 1 << 16  # elements per (candidates x references x length) block: temporaries stay in cache


@dataclass(frozen=True, eq=False)
class ArchFeatures:
    """What the distance looks at: main-chain layers ``(kind, width, kernel, stride)`` and skips ``(kind, src,
    dst)``; plus summary figures used by reports and the benchmark surrogate."""

    layers: np.ndarray  # (m, 4) float64
    skips: np.ndarray  # (k, 3) float64
    params_hint: int  # sum of weighted-layer widths, a cheap size figure

    @property
    def depth(self) -> int:
        """Weighted layers on the main chain."""
        return int(self.layers.shape[0])

    @property
    def num_skips(self) -> int:
        return int(self.skips.shape[0])


def _local_code(kind: str, params: Mapping[str, Any]) -> int:
    """A stable integer for a node's op and parameters (Python's ``hash`` of str is salted per process)."""
    text = kind + "".join(f"|{k}={params[k]}" for k in sorted(params))
    return zlib.crc32(text.encode())


def _features(
    kinds: Sequence[str],
    inputs: Sequence[Sequence[int]],
    specs: Sequence[tuple[float, float, float, float] | None],
    codes: Sequence[int],
    out: int,
) -> ArchFeatures:
    """Features of a graph given per node (in a topological order) its kind, input positions, layer spec, and a
    local code; the result does not depend on which topological order or input order is used."""
    n = len(kinds)
    depth = [0] * n
    sig = [0] * n
    pred = [-1] * n
    for i in range(n):
        best: tuple[int, int] = (-1, 0)
        arg = -1
        for j in inputs[i]:
            key = (depth[j], sig[j])
            if key > best:
                best, arg = key, j
        depth[i] = max(best[0], 0) + (1 if specs[i] is not None else 0)
        sig[i] = zlib.crc32(f"{best[1]}:{codes[i]}".encode())
        pred[i] = arg
    chain: list[int] = []
    cur = out
    while cur != -1:
        chain.append(cur)
        cur = pred[cur]
    chain.reverse()
    position: dict[int, int] = {}
    count = 0
    for i in chain:
        if specs[i] is not None:
            count += 1
        position[i] = count
    anchors: dict[int, int] = {}

    def anchor(i: int) -> int:
        """Main-chain position of ``i``, or of the main-chain node its longest path leaves from."""
        walk = []
        while i != -1 and i not in position and i not in anchors:
            walk.append(i)
            i = pred[i]
        value = position.get(i, anchors.get(i, 0))
        for w in walk:
            anchors[w] = value
        return value

    skips = []
    for i in range(n):
        if kinds[i] not in _MERGES:
            continue
        dst = anchor(i)
        for j in inputs[i]:
            if j != pred[i]:
                skips.append((_MERGES[kinds[i]], float(anchor(j) + 1), float(dst + 1)))
    skips.sort(key=lambda s: (s[2], s[1], s[0]))
    layers = [specs[i] for i in chain if specs[i] is not None]
    return ArchFeatures(
        layers=np.asarray(layers, dtype=np.float64).reshape(-1, 4),
        skips=np.asarray(skips, dtype=np.float64).reshape(-1, 3),
        params_hint=sum(int(s[1]) for s in specs if s is not None),
    )


def _spec(kind: str, params: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    if kind == "conv":
        return (
            0.0,
            float(params.get("out_channels", 1)),
            float(params.get("kernel_size", 1)),
            float(params.get("stride", 1)),
        )
    if kind == "dense":
        return (1.0, float(params.get("out_features", 1)), 0.0, 0.0)
    return None


def features_from_json(arch: Mapping[str, Any]) -> ArchFeatures:
    """Extract :class:`ArchFeatures` from an architecture JSON object (nodes in a topological order).

    Raises:
        ValueError: the object is not a well-formed architecture (a node reads a later or unknown node ...).
    """
    records = arch.get("nodes")
    output = arch.get("output")
    if not isinstance(records, list) or not records:
        raise ValueError("architecture has no nodes")
    index: dict[int, int] = {}
    kinds: list[str] = []
    inputs: list[list[int]] = []
    specs: list[tuple[float, float, float, float] | None] = []
    codes: list[int] = []
    for pos, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise ValueError(f"node {pos} is not an object")
        nid, kind, ins = rec.get("id"), rec.get("op"), rec.get("inputs", [])
        if not isinstance(nid, int) or not isinstance(kind, str) or not isinstance(ins, list):
            raise ValueError(f"node {pos} is malformed")
        try:
            inputs.append([index[i] for i in ins])
        except (KeyError, TypeError):
            raise ValueError(f"node {nid} reads a node that does not come before it") from None
        index[nid] = pos
        params = {k: v for k, v in rec.items() if k not in ("id", "op", "inputs", "out_shape")}
        kinds.append(kind)
        specs.append(_spec(kind, params))
        codes.append(_local_code(kind, params))
    if not isinstance(output, int) or output not in index:
        raise ValueError("architecture output is not one of its nodes")
    return _features(kinds, inputs, specs, codes, index[output])


def features_from_graph(graph: Graph) -> ArchFeatures:
    """The same features as :func:`features_from_json` of the graph's JSON, without serialising it."""
    index = {nid: pos for pos, nid in enumerate(graph.nodes)}
    kinds, inputs, specs, codes = [], [], [], []
    for node in graph.nodes.values():
        op = node.op
        params = dict(vars(op))  # an op's fields are plain values (the input's shape is a tuple)
        if "shape" in params:
            params["shape"] = list(params["shape"])
        kinds.append(op.kind)
        inputs.append([index[i] for i in node.inputs])
        specs.append(_spec(op.kind, params))
        codes.append(_local_code(op.kind, params))
    return _features(kinds, inputs, specs, codes, index[graph.output])


def _layer_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    same = a[..., 0] == b[..., 0]
    wa, wb = a[..., 1], b[..., 1]
    width = np.abs(wa - wb) / np.maximum(np.maximum(wa, wb), 1.0)
    ka, kb = a[..., 2], b[..., 2]
    kernel = 0.5 * np.abs(ka - kb) / np.maximum(np.maximum(ka, kb), 1.0)
    stride = 0.5 * (a[..., 3] != b[..., 3])
    return np.where(same, np.minimum(width + kernel + stride, 1.0), 1.0)


def _skip_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    same = a[..., 0] == b[..., 0]
    sa, sb, ta, tb = a[..., 1], b[..., 1], a[..., 2], b[..., 2]
    cost = (np.abs(sa - sb) + np.abs(ta - tb)) / np.maximum(np.maximum(sa, sb) + np.maximum(ta, tb), 1.0)
    return np.where(same, np.minimum(cost, 1.0), 1.0)


def _pad(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lens = np.asarray([s.shape[0] for s in seqs], dtype=np.int64)
    out = np.zeros((len(seqs), max(int(lens.max(initial=0)), 1)), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lens


def edit_distances(a: Sequence[np.ndarray], b: Sequence[np.ndarray], table: np.ndarray) -> np.ndarray:
    """Edit distances between every code sequence of ``a`` and every one of ``b`` (unit insert/delete costs).

    Elements are integer codes into ``table``, the matrix of substitution costs (in [0, 1]) between element
    types; looking a row up is one gather, far cheaper than evaluating a cost formula per pair. The dynamic
    programme runs over the rows of the ``a`` sequences, vectorised over all pairs and over the columns:
    ``D[i][j] = min(E[j], D[i][j-1] + 1)`` with ``E[j] = min(D[i-1][j-1] + c(a_i, b_j), D[i-1][j] + 1)`` unrolls to
    ``D[i][j] - j = cummin_k<=j(E[k] - k)``, one ``np.minimum.accumulate`` per row.

    Returns:
        float32 array of shape (len(a), len(b)).
    """
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    table = np.asarray(table, dtype=np.float32)
    bp, bl = _pad(b)
    n, length = bp.shape
    out = np.empty((len(a), n), dtype=np.float32)
    ar = np.arange(length + 1, dtype=np.float32)
    chunk = max(1, _CHUNK_ELEMENTS // (n * (length + 1)))
    order = np.argsort([s.shape[0] for s in a], kind="stable")  # similar lengths together: less padding
    for start in range(0, len(a), chunk):
        idx = order[start : start + chunk]
        ap, al = _pad([a[i] for i in idx])
        c = len(idx)
        prev = np.broadcast_to(ar, (c, n, length + 1)).copy()
        cur = np.empty_like(prev)
        res = np.empty((c, n), dtype=np.float32)
        zero = np.nonzero(al == 0)[0]
        if zero.size:
            res[zero] = bl[None, :]
        gather = np.broadcast_to(bl[None, :, None], (c, n, 1))
        for i in range(int(al.max(initial=0))):
            costs = table[ap[:, i][:, None, None], bp[None, :, :]]  # (c, n, length)
            costs += prev[..., :-1]
            np.minimum(costs, prev[..., 1:] + 1.0, out=cur[..., 1:])
            cur[..., 0] = i + 1
            cur -= ar
            np.minimum.accumulate(cur, axis=-1, out=cur)
            cur += ar
            rows = np.nonzero(al == i + 1)[0]
            if rows.size:
                res[rows] = np.take_along_axis(cur[rows], gather[rows], axis=-1)[..., 0]
            prev, cur = cur, prev
        out[idx] = res
    return out


def _encode(seqs: Sequence[np.ndarray], width: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Integer codes per sequence and the distinct element rows they index."""
    lens = [s.shape[0] for s in seqs]
    rows = np.concatenate([s.reshape(-1, width) for s in seqs]) if sum(lens) else np.zeros((0, width))
    if rows.shape[0] == 0:
        return [np.zeros(0, dtype=np.int64) for _ in seqs], np.zeros((1, width))
    vocab, inverse = np.unique(rows, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    codes = np.split(inverse, np.cumsum(lens)[:-1])
    return codes, vocab


def _part(a: Sequence[np.ndarray], b: Sequence[np.ndarray], width: int, cost: Any) -> np.ndarray:
    codes, vocab = _encode([*a, *b], width)
    table = cost(vocab[:, None, :], vocab[None, :, :])
    return edit_distances(codes[: len(a)], codes[len(a) :], table)


def arch_distances(a: Sequence[ArchFeatures], b: Sequence[ArchFeatures], skip_weight: float = 1.0) -> np.ndarray:
    """``d(x, y)`` of the module docstring for every pair of ``a`` x ``b`` (float64)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    layers = _part([f.layers for f in a], [f.layers for f in b], 4, _layer_cost)
    skips = _part([f.skips for f in a], [f.skips for f in b], 3, _skip_cost)
    return layers.astype(np.float64) + skip_weight * skips.astype(np.float64)


def kernel_matrix(distances: np.ndarray, length_scale: float) -> np.ndarray:
    """``exp(-d^2 / (2 l^2))`` elementwise."""
    return np.exp(-0.5 * np.square(distances / length_scale))
