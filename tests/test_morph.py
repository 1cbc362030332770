"""Network-morphism operators: a property test over random sequences, and targeted tests of each move."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
import torch

from aiperf import flops
from aiperf.arch import (
    MORPHS,
    SEEDS,
    Add,
    ArchLimits,
    BatchNorm,
    Concat,
    Conv,
    Dense,
    GlobalAvgPool,
    Graph,
    GraphEditor,
    ReLU,
    add_skip,
    build_module,
    deepen,
    deepen_targets,
    random_morph,
    resnet,
    seed,
    skip_sources,
    skip_targets,
    widen,
    widen_targets,
)
from aiperf.errors import ArchError

HISTORY_OPS = {"deepen", "widen", "skip"}
assert set(MORPHS) == HISTORY_OPS


@pytest.fixture(autouse=True, scope="module")
def _threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only adds contention on a shared machine
    yield
    torch.set_num_threads(before)


# -- property test ---------------------------------------------------------------------------------------------
# family -> (seed builder, number of random sequences). Small inputs and widths for the many sequences that also
# run in torch; every SEEDS entry takes part, the deep ones at width 4-8.
FAMILIES: dict[str, tuple[Callable[[], Graph], int]] = {
    "tiny-8x8x1": (lambda: seed("resnet-tiny", (1, 8, 8), 10, width=8), 50),
    "small-8x8x1": (lambda: seed("resnet-small", (1, 8, 8), 10, width=8), 50),
    "bottleneck-8x8x1": (lambda: resnet((1, 8, 8), 10, (1, 1, 1), "bottleneck", 4), 50),
    "tiny-32x32x3": (lambda: seed("resnet-tiny", (3, 32, 32), 10, width=16), 40),
    "small-32x32x3": (lambda: seed("resnet-small", (3, 32, 32), 10, width=8), 40),
    "bottleneck-32x32x3": (lambda: resnet((3, 32, 32), 10, (1, 1), "bottleneck", 4, stride_on_3x3=False), 40),
    "resnet18-8x8x1": (lambda: seed("resnet18", (1, 8, 8), 10, width=8), 10),
    "resnet34-8x8x1": (lambda: seed("resnet34", (1, 8, 8), 10, width=4), 8),
    "resnet50-8x8x1": (lambda: seed("resnet50", (1, 8, 8), 10, width=4), 8),
    "resnet101-8x8x1": (lambda: seed("resnet101", (1, 8, 8), 10, width=4), 4),
}


def run_sequence(start: Graph, rng: random.Random, steps: int) -> Graph:
    """Apply ``steps`` random morphs, checking the invariants after every one."""
    graph = start
    for step in range(steps):
        before = graph
        graph = random_morph(graph, rng)
        assert isinstance(graph, Graph)
        assert len(graph.history) == len(before.history) + 1 == len(start.history) + step + 1
        assert graph.history[: len(before.history)] == before.history
        assert graph.history[-1]["op"] in HISTORY_OPS
        assert graph.input_shape == start.input_shape and graph.num_classes == start.num_classes
        assert graph.content_hash() != before.content_hash()
        # validate again from scratch, as a file written by this graph would be read
        assert Graph.from_json(graph.to_json()).to_json() == graph.to_json()
    return graph


def run_in_torch(graph: Graph) -> None:
    module = build_module(graph)
    assert sum(p.numel() for p in module.parameters()) == graph.num_params()
    x = torch.randn(2, *graph.input_shape)
    out = module(x)
    assert out.shape == (2, graph.num_classes)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("family", list(FAMILIES))
def test_random_morph_sequences_stay_valid_and_train(family: str) -> None:
    build, count = FAMILIES[family]
    start = build()
    for index in range(count):
        rng = random.Random(f"{family}/{index}")
        graph = run_sequence(start, rng, rng.randint(1, 20))
        run_in_torch(graph)


@pytest.mark.parametrize("name", list(SEEDS))
def test_random_morph_sequences_on_imagenet_seeds_graph_level(name: str) -> None:
    start = seed(name, (3, 224, 224), 1000)
    for index in range(3):
        rng = random.Random(f"{name}/224/{index}")
        graph = run_sequence(start, rng, 20 if index == 0 else rng.randint(1, 20))
        assert flops.forward_flops(graph) >= flops.forward_flops(start)


# -- deepen ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_deepen_inserts_a_conv_bn_relu_block_after_an_image_activation(kernel: int) -> None:
    graph = seed("resnet-small", (1, 8, 8), 10, width=8)
    after = 17  # the ReLU that ends stage 0; read by two convs of stage 1
    assert graph.nodes[after].op == ReLU() and len(graph.consumers(after)) == 2
    deeper = deepen(graph, after, kernel)
    assert len(deeper) == len(graph) + 3
    new = sorted(set(deeper.nodes) - set(graph.nodes))
    conv, bn, relu = (deeper.nodes[n] for n in new)
    assert conv.op == Conv(8, kernel, 1, kernel // 2) and conv.inputs == (after,)
    assert bn.op == BatchNorm() and bn.inputs == (conv.id,)
    assert relu.op == ReLU() and relu.inputs == (bn.id,)
    for consumer in graph.consumers(after):
        assert deeper.nodes[consumer].inputs == (relu.id,)
    assert deeper.consumers(after) == (conv.id,)
    assert all(deeper.shapes[n] == graph.shapes[n] for n in graph.nodes)
    assert deeper.num_params() == graph.num_params() + kernel * kernel * 8 * 8 + 2 * 8
    assert deeper.history[-1] == {"op": "deepen", "after": after, "kernel_size": kernel}


def test_deepen_inserts_a_dense_relu_block_after_global_pooling() -> None:
    graph = seed("resnet-tiny", (3, 32, 32), 10, width=8)
    gap = next(n for n, node in graph.nodes.items() if isinstance(node.op, GlobalAvgPool))
    assert gap in deepen_targets(graph)
    deeper = deepen(graph, gap)
    dense, relu = (deeper.nodes[n] for n in sorted(set(deeper.nodes) - set(graph.nodes)))
    width = graph.shapes[gap][0]
    assert dense.op == Dense(width) and dense.inputs == (gap,)
    assert relu.op == ReLU() and deeper.nodes[deeper.output].inputs == (relu.id,)
    assert deeper.num_params() == graph.num_params() + width * width + width
    assert deeper.history[-1] == {"op": "deepen", "after": gap, "units": width}
    # the new hidden layer can be widened; the classifier absorbs it
    wider = widen(deeper, dense.id, 5)
    assert wider.shapes[dense.id] == (width + 5,)
    assert wider.in_shapes(wider.output) == [(width + 5,)]
    assert wider.num_classes == 10


def test_deepen_refuses_bad_places_and_kernels() -> None:
    graph = seed("resnet-tiny", (1, 8, 8), 10, width=8)
    for bad in (graph.output, graph.input_id, 10_000):
        with pytest.raises(ArchError, match="not an inner node"):
            deepen(graph, bad)
    for kernel in (0, 2, -1):
        with pytest.raises(ArchError, match="kernel_size"):
            deepen(graph, 3, kernel)


# -- widen -----------------------------------------------------------------------------------------------------
def test_widening_one_conv_widens_every_producer_tied_by_the_adds() -> None:
    graph = seed("resnet-small", (1, 8, 8), 10, width=8)
    kinds = {n: graph.nodes[n].op.kind for n in (1, 4, 7, 9, 11, 14, 16, 18, 21, 23, 25, 27, 30, 32)}
    assert kinds == {
        1: "conv", 4: "conv", 7: "conv", 9: "add", 11: "conv", 14: "conv", 16: "add",
        18: "conv", 21: "conv", 23: "conv", 25: "add", 27: "conv", 30: "conv", 32: "add",
    }  # fmt: skip
    # stage 0 has no projection: its adds tie the stem conv (1) and the last conv of each block (7, 14)
    wider = widen(graph, 14, 4)
    assert wider.history[-1] == {"op": "widen", "target": 14, "extra": 4, "group": [1, 7, 14]}
    for nid in (1, 7, 14, 9, 16):
        assert wider.shapes[nid][0] == 12
    for nid in (4, 11, 18, 23):  # first convs of blocks and the stage-1 convs read the wider tensor
        assert wider.shapes[nid] == graph.shapes[nid]
        assert wider.in_shapes(nid)[0][0] in (8, 12)
    assert wider.in_shapes(18)[0][0] == 12 and wider.in_shapes(23)[0][0] == 12
    # stage 1: the projection (23) and the last convs (21, 30); not the stem, not stage 0
    wider = widen(graph, 21, 16)
    assert wider.history[-1]["group"] == [21, 23, 30]
    assert [wider.shapes[n][0] for n in (21, 23, 25, 30, 32)] == [32] * 5
    assert wider.shapes[1] == graph.shapes[1] and wider.shapes[27] == graph.shapes[27]
    # widening an inner conv of a block touches that conv only
    assert widen(graph, 27, 3).history[-1]["group"] == [27]


def test_widen_targets_are_exactly_what_widen_accepts() -> None:
    graph = deepen(seed("resnet-tiny", (1, 8, 8), 10, width=8), 3)
    targets = set(widen_targets(graph))
    for nid, node in graph.nodes.items():
        if nid in targets:
            assert widen(graph, nid, 1).num_classes == 10
        elif isinstance(node.op, (Conv, Dense)):
            with pytest.raises(ArchError, match="cannot be widened"):
                widen(graph, nid, 1)
        else:
            with pytest.raises(ArchError, match="not a conv or dense"):
                widen(graph, nid, 1)


def test_the_classifier_cannot_be_widened() -> None:
    graph = seed("resnet-tiny", (1, 8, 8), 10, width=8)
    assert graph.output not in widen_targets(graph)
    with pytest.raises(ArchError, match=f"node {graph.output} cannot be widened"):
        widen(graph, graph.output, 1)
    for extra in (0, -2, 1.5, True):
        with pytest.raises(ArchError, match="extra must be a positive integer"):
            widen(graph, 1, extra)  # type: ignore[arg-type]


# -- skip connections ------------------------------------------------------------------------------------------
def test_add_skip_of_equal_shapes_needs_no_projection() -> None:
    graph = seed("resnet-small", (1, 8, 8), 10, width=8)
    src, dst = 3, 13  # stem ReLU -> inner ReLU of block 1, both (8, 8, 8)
    assert src in skip_sources(graph, dst)
    out = add_skip(graph, src, dst, "add")
    (merge,) = set(out.nodes) - set(graph.nodes)
    assert out.nodes[merge].op == Add() and set(out.nodes[merge].inputs) == {src, dst}
    assert out.nodes[14].inputs == (merge,)  # dst's consumer now reads the sum
    assert out.num_params() == graph.num_params()
    assert out.history[-1] == {"op": "skip", "kind": "add", "src": src, "dst": dst}


def test_add_skip_projects_when_shapes_differ() -> None:
    graph = seed("resnet-small", (1, 8, 8), 10, width=8)
    src, dst = 3, 29  # (8, 8, 8) -> (16, 4, 4)
    out = add_skip(graph, src, dst, "add")
    new = sorted(set(out.nodes) - set(graph.nodes))
    conv, bn, merge = (out.nodes[n] for n in new)
    assert conv.op == Conv(16, 1, 2, 0) and conv.inputs == (src,)
    assert bn.op == BatchNorm()
    assert merge.op == Add() and set(merge.inputs) == {dst, bn.id}
    assert out.num_params() == graph.num_params() + 8 * 16 + 2 * 16


@pytest.mark.parametrize(("src", "dst", "projected"), [(3, 13, False), (3, 29, True)])
def test_concat_skip_restores_the_channels_of_dst(src: int, dst: int, projected: bool) -> None:
    graph = seed("resnet-small", (1, 8, 8), 10, width=8)
    out = add_skip(graph, src, dst, "concat")
    new = [out.nodes[n] for n in sorted(set(out.nodes) - set(graph.nodes))]
    assert len(new) == (6 if projected else 4)
    cat = next(n for n in new if isinstance(n.op, Concat))
    assert cat.inputs[0] == dst
    assert out.shapes[cat.id][0] == graph.shapes[dst][0] + graph.shapes[src][0]
    back = new[-1]
    assert back.op == ReLU() and out.shapes[back.id] == graph.shapes[dst]
    assert all(out.shapes[n] == graph.shapes[n] for n in graph.nodes)
    if projected:
        assert new[0].op == Conv(graph.shapes[src][0], 1, 2, 0)


def test_skip_must_go_forward_between_compatible_activations() -> None:
    graph = seed("resnet-small", (1, 8, 8), 10, width=8)
    with pytest.raises(ArchError, match="not an earlier node"):
        add_skip(graph, 13, 3)  # backwards: would close a cycle
    with pytest.raises(ArchError, match="not an earlier node"):
        add_skip(graph, 3, 3)
    with pytest.raises(ArchError, match="not an earlier node"):
        add_skip(graph, 3, graph.output)
    with pytest.raises(ArchError, match="must both exist"):
        add_skip(graph, 3, 999)
    with pytest.raises(ArchError, match="kind must be"):
        add_skip(graph, 3, 13, "mul")
    # two parallel branches: neither is an ancestor of the other
    ed = GraphEditor(input_shape=(1, 8, 8))
    a = ed.add(ReLU(), ed.add(Conv(4), ed.input_id))
    b = ed.add(ReLU(), ed.add(Conv(4), ed.input_id))
    ed.add(Dense(3), ed.add(GlobalAvgPool(), ed.add(Add(), a, b)))
    parallel = ed.build()
    with pytest.raises(ArchError, match="not an earlier node"):
        add_skip(parallel, a, b)
    assert skip_sources(parallel, b) == []
    # 12x12 -> 8x8 has no integer downsampling factor
    ed = GraphEditor(input_shape=(1, 12, 12))
    big = ed.add(ReLU(), ed.add(Conv(4), ed.input_id))
    mid = ed.add(ReLU(), ed.add(Conv(4), big))
    small = ed.add(ReLU(), ed.add(Conv(4, 5, 1, 0), mid))
    ed.add(Dense(3), ed.add(GlobalAvgPool(), small))
    odd = ed.build()
    assert big not in skip_sources(odd, small)
    with pytest.raises(ArchError, match="not compatible"):
        add_skip(odd, big, small)


def test_every_listed_skip_applies() -> None:
    graph = deepen(seed("resnet-tiny", (3, 32, 32), 10, width=8), 3)
    count = 0
    for dst in skip_targets(graph):
        for src in skip_sources(graph, dst):
            for kind in ("add", "concat"):
                out = add_skip(graph, src, dst, kind)
                assert out.history[-1] == {"op": "skip", "kind": kind, "src": src, "dst": dst}
                count += 1
    assert count > 10


# -- random_morph ----------------------------------------------------------------------------------------------
def test_random_morph_is_deterministic_for_a_seeded_rng() -> None:
    start = seed("resnet-small", (1, 8, 8), 10, width=8)

    def trail(value: int) -> list[str]:
        rng = random.Random(value)
        graph, out = start, []
        for _ in range(20):
            graph = random_morph(graph, rng)
            out.append(graph.content_hash())
        return out

    assert trail(42) == trail(42)
    assert len({tuple(trail(v)) for v in range(5)}) == 5


def test_random_morph_respects_the_limits() -> None:
    start = seed("resnet-small", (1, 8, 8), 10, width=8)
    limits = ArchLimits(
        max_nodes=len(start) + 12,
        max_params=int(start.num_params() * 1.5),
        max_forward_flops=int(flops.forward_flops(start) * 1.5),
    )
    refused = accepted = 0
    for value in range(30):
        rng = random.Random(value)
        graph = start
        for _ in range(20):
            try:
                graph = random_morph(graph, rng, limits=limits)
            except ArchError as exc:
                assert "no morph" in str(exc)
                refused += 1
                break
            accepted += 1
            assert len(graph) <= limits.max_nodes
            assert graph.num_params() <= limits.max_params  # type: ignore[operator]
            assert flops.forward_flops(graph) <= limits.max_forward_flops  # type: ignore[operator]
    assert refused > 0 and accepted > 0
    with pytest.raises(ArchError, match="no morph"):
        random_morph(start, random.Random(0), limits=ArchLimits(max_params=start.num_params()))


def test_random_morph_honours_the_allowed_moves() -> None:
    graph = seed("resnet-tiny", (1, 8, 8), 10, width=8)
    rng = random.Random(3)
    for op, record in (("widen", "widen"), ("deepen", "deepen"), ("skip", "skip")):
        for _ in range(5):
            graph = random_morph(graph, rng, ops=(op,))
            assert graph.history[-1]["op"] == record
    with pytest.raises(ArchError, match="unknown morph"):
        random_morph(graph, rng, ops=("prune",))
