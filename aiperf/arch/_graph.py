"""The architecture graph: a validated DAG of layer ops with shapes at every node.

A :class:`Graph` is immutable once built. Construction checks everything a user can get wrong (dangling edges,
cycles, unreachable nodes, shape mismatches, a non-vector output) and raises :class:`~aiperf.errors.ArchError`
naming the node; nothing is allocated but the node table, so even an absurd graph is refused cheaply. Editing
(network morphism, applying hyperparameters) goes through :meth:`Graph.edit`, which returns a mutable
:class:`GraphEditor` whose :meth:`~GraphEditor.build` validates again.

The canonical JSON form (``format: "aiperf.arch"``, ``version: 1``) lists nodes in a deterministic topological
order with ids renumbered 0..n-1, so two graphs that differ only in node numbering or in the order of an
``add``'s inputs have the same canonical form and the same :meth:`Graph.content_hash`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiperf.arch._ops import Add, Input, Op, Shape, op_from_json
from aiperf.errors import ArchError

__all__ = [
    "BYTES_PER_LAYER",
    "DEFAULT_LIMITS",
    "FORMAT",
    "FORMAT_VERSION",
    "ArchLimits",
    "Graph",
    "GraphEditor",
    "Node",
    "check_text_size",
    "json_content_hash",
]

FORMAT = "aiperf.arch"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Node:
    """One layer: ``op`` applied to the outputs of the nodes ``inputs``; its output is this node's tensor."""

    id: int
    op: Op
    inputs: tuple[int, ...]


@dataclass(frozen=True)
class ArchLimits:
    """Size ceilings checked before any module is built (None: no ceiling).

    Attributes:
        max_nodes: layers in the graph, input included.
        max_params: trainable parameters.
        max_forward_flops: forward FLOPs per image (see :mod:`aiperf.flops`).
    """

    max_nodes: int | None = 10_000
    max_params: int | None = None
    max_forward_flops: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_nodes", "max_params", "max_forward_flops"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ArchError(f"ArchLimits.{name} must be a positive integer or None, got {value!r}")


DEFAULT_LIMITS = ArchLimits()
BYTES_PER_LAYER = 2048  # a generous budget of JSON text per layer: refuse absurd files before parsing them


def check_text_size(text: str | bytes, limits: ArchLimits | None) -> None:
    """Refuse architecture text too long for ``limits.max_nodes`` layers before it is parsed (parsing a huge file
    costs many times its size in memory)."""
    if limits is not None and limits.max_nodes is not None and len(text) > limits.max_nodes * BYTES_PER_LAYER:
        raise ArchError(
            f"architecture text is {len(text):,} bytes, more than {limits.max_nodes:,} layers can need "
            f"({BYTES_PER_LAYER} bytes each): over the ceiling of {limits.max_nodes:,} layers"
        )


def _describe(node: Node) -> str:
    return f"node {node.id} ({node.op.kind})"


def _structure_hash(nodes: Sequence[Mapping[str, Any]], output: Any) -> str:
    """The content hash recipe: SHA-256 of the nodes (``out_shape`` left out) and the output, keys sorted."""
    structure = [{k: v for k, v in n.items() if k != "out_shape"} for n in nodes]
    text = json.dumps(
        {"version": FORMAT_VERSION, "nodes": structure, "output": output}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


def json_content_hash(data: Any) -> str | None:
    """The content hash of an architecture JSON object *as written*, without building the graph (~20x cheaper).

    For the canonical JSON (``graph.canonical().to_json()``, what proposals store) this is
    ``graph.content_hash()``. For any other object it is the hash of no graph at all: a content hash is taken
    over a canonical form, and an equal hash means an equal text, hence the same graph in its canonical form. So
    ``json_content_hash(data) == h`` proves that ``h`` is the content hash of the graph ``data`` describes, or of
    no graph; a mismatch proves nothing (``data`` may be valid but not canonical: build the graph to know).
    Returns None when ``data`` is not shaped like an architecture object (format, version, a list of node objects).
    """
    if not isinstance(data, Mapping) or data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
        return None
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not all(isinstance(n, Mapping) for n in nodes):
        return None
    try:
        return _structure_hash(nodes, data.get("output"))
    except (TypeError, ValueError, RecursionError):  # not JSON-serialisable as it is
        return None


class Graph:
    """A validated, immutable architecture.

    Attributes:
        nodes: id -> node, in a topological order (inputs before consumers).
        shapes: id -> output shape of that node, without the batch dimension.
        output: id of the node whose output is the logits vector.
        history: the network-morphism operations that produced this graph, oldest first (not part of the hash).
    """

    __slots__ = ("_canonical", "_consumers", "_hash", "history", "input_id", "nodes", "output", "shapes")

    def __init__(
        self,
        nodes: Iterable[Node],
        output: int,
        history: Sequence[Mapping[str, Any]] = (),
        limits: ArchLimits | None = DEFAULT_LIMITS,
    ) -> None:
        table: dict[int, Node] = {}
        for node in nodes:
            if node.id in table:
                raise ArchError(f"node id {node.id} is used twice")
            table[node.id] = node
        if limits is not None and limits.max_nodes is not None and len(table) > limits.max_nodes:
            raise ArchError(f"graph has {len(table)} layers, over the ceiling of {limits.max_nodes}")
        inputs = [n.id for n in table.values() if isinstance(n.op, Input)]
        if len(inputs) != 1:
            raise ArchError(f"graph must have exactly one input node, found {len(inputs)}")
        if output not in table:
            raise ArchError(f"output node {output} does not exist")
        for node in table.values():
            for src in node.inputs:
                if src not in table:
                    raise ArchError(f"{_describe(node)}: input {src} does not exist (dangling edge)")
            if len(set(node.inputs)) != len(node.inputs):
                raise ArchError(f"{_describe(node)}: the same input is listed twice {list(node.inputs)}")
        order = _topological_order(table)
        shapes: dict[int, Shape] = {}
        for nid in order:
            node = table[nid]
            shapes[nid] = node.op.infer([shapes[i] for i in node.inputs], _describe(node))
        if len(shapes[output]) != 1:
            raise ArchError(
                f"output {_describe(table[output])} must be a vector of class scores, got shape {list(shapes[output])}"
            )
        consumers: dict[int, list[int]] = {nid: [] for nid in order}
        for nid in order:
            for src in table[nid].inputs:
                consumers[src].append(nid)
        live = {output}
        stack = [output]
        while stack:
            for src in table[stack.pop()].inputs:
                if src not in live:
                    live.add(src)
                    stack.append(src)
        dead = [nid for nid in order if nid not in live]
        if dead:
            raise ArchError(f"{_describe(table[dead[0]])} does not lead to the output {output}")
        self.nodes: dict[int, Node] = {nid: table[nid] for nid in order}
        self.shapes: dict[int, Shape] = shapes
        self.output = output
        self.input_id = inputs[0]
        self.history: tuple[dict[str, Any], ...] = tuple(dict(h) for h in history)
        self._consumers = {k: tuple(v) for k, v in consumers.items()}
        self._hash: str | None = None
        self._canonical: Graph | None = None
        if limits is not None and (limits.max_params is not None or limits.max_forward_flops is not None):
            self.check_limits(limits)

    # -- queries -------------------------------------------------------------------------------------------------
    @property
    def input_shape(self) -> Shape:
        return self.shapes[self.input_id]

    @property
    def num_classes(self) -> int:
        return self.shapes[self.output][0]

    def __len__(self) -> int:
        return len(self.nodes)

    def consumers(self, nid: int) -> tuple[int, ...]:
        """Ids of the nodes that read ``nid``'s output."""
        return self._consumers[nid]

    def in_shapes(self, nid: int) -> list[Shape]:
        return [self.shapes[i] for i in self.nodes[nid].inputs]

    def ancestors(self, nid: int) -> set[int]:
        """All nodes ``nid`` depends on (itself excluded)."""
        seen: set[int] = set()
        stack = list(self.nodes[nid].inputs)
        while stack:
            cur = stack.pop()
            if cur not in seen:
                seen.add(cur)
                stack.extend(self.nodes[cur].inputs)
        return seen

    def num_params(self) -> int:
        """Trainable parameters of the built module, computed from shapes alone."""
        return sum(n.op.num_params(self.in_shapes(n.id), self.shapes[n.id]) for n in self.nodes.values())

    def count(self, kind: str) -> int:
        return sum(1 for n in self.nodes.values() if n.op.kind == kind)

    def check_limits(self, limits: ArchLimits) -> None:
        """Raise :class:`ArchError` if the graph is over any ceiling of ``limits``; allocates nothing."""
        if limits.max_nodes is not None and len(self.nodes) > limits.max_nodes:
            raise ArchError(f"graph has {len(self.nodes)} layers, over the ceiling of {limits.max_nodes}")
        if limits.max_params is not None:
            total = 0
            for node in self.nodes.values():
                total += node.op.num_params(self.in_shapes(node.id), self.shapes[node.id])
                if total > limits.max_params:
                    raise ArchError(
                        f"graph has over {limits.max_params:,} parameters (reached {total:,} at {_describe(node)})"
                    )
        if limits.max_forward_flops is not None:
            from aiperf.flops import layer_forward_flops

            total = 0
            for node in self.nodes.values():
                total += layer_forward_flops(self, node.id)
                if total > limits.max_forward_flops:
                    raise ArchError(
                        f"graph needs over {limits.max_forward_flops:,} forward FLOPs per image "
                        f"(reached {total:,} at {_describe(node)})"
                    )

    # -- editing -------------------------------------------------------------------------------------------------
    def edit(self) -> GraphEditor:
        return GraphEditor(self)

    # -- serialisation -------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The versioned JSON object of this graph (ids as they are; see :meth:`canonical`)."""
        nodes = []
        for node in self.nodes.values():
            record: dict[str, Any] = {"id": node.id, **node.op.to_json()}
            if node.inputs:
                record["inputs"] = list(node.inputs)
            record["out_shape"] = list(self.shapes[node.id])
            nodes.append(record)
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "nodes": nodes,
            "output": self.output,
            "history": [dict(h) for h in self.history],
        }

    def dumps(self) -> str:
        return json.dumps(self.canonical().to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Any, limits: ArchLimits | None = DEFAULT_LIMITS) -> Graph:
        """Load the JSON object written by :meth:`to_json`; every problem is an :class:`ArchError`."""
        if not isinstance(data, Mapping):
            raise ArchError(f"architecture JSON must be an object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ArchError(f"architecture JSON has format {data.get('format')!r}, expected {FORMAT!r}")
        if data.get("version") != FORMAT_VERSION:
            raise ArchError(
                f"architecture JSON has version {data.get('version')!r}; this aiperf reads version {FORMAT_VERSION}"
            )
        records = data.get("nodes")
        if not isinstance(records, list) or not records:
            raise ArchError("architecture JSON needs a non-empty list 'nodes'")
        if limits is not None and limits.max_nodes is not None and len(records) > limits.max_nodes:
            raise ArchError(f"graph has {len(records)} layers, over the ceiling of {limits.max_nodes}")
        nodes = []
        declared: dict[int, list[int]] = {}
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                raise ArchError(f"nodes[{i}] must be an object, got {type(rec).__name__}")
            nid = rec.get("id")
            if isinstance(nid, bool) or not isinstance(nid, int):
                raise ArchError(f"nodes[{i}]: 'id' must be an integer, got {nid!r}")
            where = f"node {nid} ({rec.get('op')})"
            ins = rec.get("inputs", [])
            if not isinstance(ins, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in ins):
                raise ArchError(f"{where}: 'inputs' must be a list of node ids, got {ins!r}")
            if "out_shape" in rec:
                shape = rec["out_shape"]
                if not isinstance(shape, list) or not all(isinstance(x, int) for x in shape):
                    raise ArchError(f"{where}: 'out_shape' must be a list of integers, got {shape!r}")
                declared[nid] = shape
            nodes.append(Node(nid, op_from_json(rec, where), tuple(ins)))
        output = data.get("output")
        if isinstance(output, bool) or not isinstance(output, int):
            raise ArchError(f"architecture JSON: 'output' must be a node id, got {output!r}")
        history = data.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, Mapping) for h in history):
            raise ArchError("architecture JSON: 'history' must be a list of objects")
        graph = cls(nodes, output, history, limits)
        for nid, shape in declared.items():
            if tuple(shape) != graph.shapes[nid]:
                raise ArchError(
                    f"{_describe(graph.nodes[nid])}: declared shape {shape} but its inputs give "
                    f"{list(graph.shapes[nid])}"
                )
        return graph

    @classmethod
    def loads(cls, text: str | bytes, limits: ArchLimits | None = DEFAULT_LIMITS) -> Graph:
        check_text_size(text, limits)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ArchError(f"architecture is not valid JSON: {exc}") from None
        return cls.from_json(data, limits)

    def canonical(self) -> Graph:
        """The same graph with nodes in canonical order and ids 0..n-1 (the form that is hashed and stored).

        Nodes are ordered topologically; among the nodes ready at each step the one with the smallest
        (structural colour, canonical ids of its inputs) goes first. Colours come from :meth:`_colors` and never
        depend on node ids, so renumbering a graph or permuting an ``add``'s inputs gives the same result.
        """
        if self._canonical is not None:  # immutable: computed once (the hash and the v1 counter both need it)
            return self._canonical
        colors = self._colors()
        order: list[int] = []
        new_id: dict[int, int] = {}
        pending = {nid: len(node.inputs) for nid, node in self.nodes.items()}
        ready: list[tuple[str, list[int], int]] = []

        def push(nid: int) -> None:
            node = self.nodes[nid]
            ins = [new_id[i] for i in node.inputs]
            if isinstance(node.op, Add):
                ins.sort()
            heapq.heappush(ready, (colors[nid], ins, nid))

        for nid, count in pending.items():
            if count == 0:
                push(nid)
        while ready:
            _, _, nid = heapq.heappop(ready)
            new_id[nid] = len(order)
            order.append(nid)
            for dst in self._consumers[nid]:
                pending[dst] -= 1
                if pending[dst] == 0:
                    push(dst)
        nodes = []
        for old in order:
            node = self.nodes[old]
            ins = tuple(new_id[i] for i in node.inputs)
            if isinstance(node.op, Add):
                ins = tuple(sorted(ins))
            nodes.append(Node(new_id[old], node.op, ins))
        self._canonical = Graph(nodes, new_id[self.output], self.history, limits=None)
        return self._canonical

    def content_hash(self) -> str:
        """SHA-256 of the canonical structure (ops, parameters, edges); history excluded. Stable across runs."""
        if self._hash is None:
            canon = self.canonical().to_json()
            self._hash = _structure_hash(canon["nodes"], canon["output"])
        return self._hash

    def _colors(self) -> dict[int, str]:
        """A structural colour per node that ignores node ids: equal colours mean "looks the same from everywhere".

        A forward digest (the op and, recursively, everything it reads) alone is not enough: two identical
        projections of one tensor (two skips from the same source) get the same forward digest while feeding
        different places, and ordering them by id made the hash depend on numbering. So each colour also folds in
        a backward digest (what reads the node, in which input position, down to the output), and the colours are
        then refined (colour refinement / 1-WL) until the partition into colour classes stops splitting. Nodes
        still tied after that are interchangeable in every graph the morphs produce.
        """

        def digest(value: object) -> str:
            return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()

        def ordered(nid: int, values: list[str]) -> list[str]:
            return sorted(values) if isinstance(self.nodes[nid].op, Add) else values

        def position(src: int, dst: int) -> int:
            node = self.nodes[dst]
            return -1 if isinstance(node.op, Add) else node.inputs.index(src)

        forward: dict[int, str] = {}
        for nid, node in self.nodes.items():
            op_json = json.dumps(node.op.to_json(), sort_keys=True, separators=(",", ":"))
            forward[nid] = digest([op_json, ordered(nid, [forward[i] for i in node.inputs])])
        backward: dict[int, str] = {}
        for nid in reversed(self.nodes):
            uses = sorted([forward[dst], backward[dst], position(nid, dst)] for dst in self._consumers[nid])
            backward[nid] = digest([nid == self.output, uses])
        colors = {nid: digest([forward[nid], backward[nid]]) for nid in self.nodes}
        classes = len(set(colors.values()))
        while True:
            refined = {
                nid: digest(
                    [
                        colors[nid],
                        ordered(nid, [colors[i] for i in node.inputs]),
                        sorted([colors[dst], position(nid, dst)] for dst in self._consumers[nid]),
                    ]
                )
                for nid, node in self.nodes.items()
            }
            count = len(set(refined.values()))
            colors = refined
            if count == classes:
                return colors
            classes = count

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.content_hash() == other.content_hash()

    def __hash__(self) -> int:
        return hash(self.content_hash())

    def __repr__(self) -> str:
        return (
            f"Graph({len(self.nodes)} layers, input {list(self.input_shape)}, {self.num_classes} classes, "
            f"{self.num_params():,} params, hash {self.content_hash()[:12]})"
        )


def _topological_order(table: Mapping[int, Node]) -> list[int]:
    """Kahn's algorithm that keeps the given order wherever it is already topological.

    Among the ready nodes the earliest listed goes first, so a node list that is already in topological order
    (what :meth:`Graph.to_json` writes) comes back unchanged and ``to_json``/``from_json`` round-trip exactly.
    """
    position = {nid: index for index, nid in enumerate(table)}
    pending = {nid: len(node.inputs) for nid, node in table.items()}
    consumers: dict[int, list[int]] = {nid: [] for nid in table}
    for node in table.values():
        for src in node.inputs:
            consumers[src].append(node.id)
    ready = [position[nid] for nid, count in pending.items() if count == 0]
    heapq.heapify(ready)
    ids = list(table)
    order: list[int] = []
    while ready:
        nid = ids[heapq.heappop(ready)]
        order.append(nid)
        for dst in consumers[nid]:
            pending[dst] -= 1
            if pending[dst] == 0:
                heapq.heappush(ready, position[dst])
    if len(order) != len(table):
        stuck = {nid for nid, count in pending.items() if count > 0}
        cycle = _find_cycle(stuck, lambda nid: table[nid].inputs)
        raise ArchError(f"graph has a cycle: {' -> '.join(_describe(table[n]) for n in cycle)}")
    return order


def _find_cycle(stuck: set[int], inputs: Callable[[int], Iterable[int]]) -> list[int]:
    """One cycle among the nodes Kahn's algorithm could not order, in data-flow order.

    Each stuck node waits for at least one stuck input, so walking from any of them to a stuck input must come
    back to a node already visited; the part of the walk from that node on is a cycle.
    """
    walk: list[int] = []
    seen: dict[int, int] = {}
    nid = min(stuck)
    while nid not in seen:
        seen[nid] = len(walk)
        walk.append(nid)
        nid = min(i for i in inputs(nid) if i in stuck)
    cycle = walk[seen[nid] :]
    cycle.reverse()
    return [*cycle, cycle[0]]


class GraphEditor:
    """A mutable copy of a graph's node table, for building derived graphs.

    Nodes are added with fresh ids; :meth:`rewire` moves consumers from one node to another; :meth:`build`
    validates and returns a new :class:`Graph`.
    """

    def __init__(self, graph: Graph | None = None, input_shape: Shape | None = None) -> None:
        if graph is not None:
            self.nodes: dict[int, Node] = dict(graph.nodes)
            self.output = graph.output
            self.history: list[dict[str, Any]] = [dict(h) for h in graph.history]
        else:
            if input_shape is None:
                raise ArchError("GraphEditor needs a graph or an input shape")
            self.nodes = {0: Node(0, Input(shape=tuple(input_shape)), ())}
            self.output = 0
            self.history = []
        self._next = max(self.nodes) + 1

    @property
    def input_id(self) -> int:
        return next(n.id for n in self.nodes.values() if isinstance(n.op, Input))

    @property
    def next_id(self) -> int:
        """The id the next :meth:`add` will use."""
        return self._next

    def added_since(self, first: int) -> list[int]:
        """Ids of the nodes added from id ``first`` on (to keep them out of a :meth:`rewire`)."""
        return [nid for nid in self.nodes if nid >= first]

    def add(self, op: Op, *inputs: int) -> int:
        """Append ``op`` reading ``inputs``; returns its new id. The newest node becomes the output."""
        nid = self._next
        self._next += 1
        self.nodes[nid] = Node(nid, op, tuple(inputs))
        self.output = nid
        return nid

    def replace_op(self, nid: int, op: Op) -> None:
        node = self.nodes[nid]
        self.nodes[nid] = Node(nid, op, node.inputs)

    def rewire(self, old: int, new: int, exclude: Iterable[int] = ()) -> None:
        """Make every consumer of ``old`` (except ``new`` and ``exclude``) read ``new`` instead."""
        skip = {new, *exclude}
        for nid, node in list(self.nodes.items()):
            if nid in skip or old not in node.inputs:
                continue
            self.nodes[nid] = Node(nid, node.op, tuple(new if i == old else i for i in node.inputs))
        if self.output == old:
            self.output = new

    def build(self, record: Mapping[str, Any] | None = None, limits: ArchLimits | None = DEFAULT_LIMITS) -> Graph:
        history = list(self.history)
        if record is not None:
            history.append(dict(record))
        return Graph(self.nodes.values(), self.output, history, limits)
