"""The architecture IR: shape inference, canonical JSON, content hash, hyperparameters and seeds."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from aiperf import flops
from aiperf.arch import (
    FORMAT,
    FORMAT_VERSION,
    OPS,
    SEEDS,
    Add,
    AvgPool,
    BatchNorm,
    Concat,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Graph,
    GraphEditor,
    Input,
    MaxPool,
    Node,
    Op,
    ReLU,
    add_skip,
    apply_hyperparameters,
    late_convs,
    random_morph,
    resnet,
    seed,
    skip_sources,
    skip_targets,
)
from aiperf.errors import ArchError

ROOT = Path(__file__).resolve().parents[1]
INPUTS = [((3, 224, 224), 1000), ((3, 32, 32), 10), ((1, 8, 8), 10)]


def morphed(seed_value: int, steps: int = 12, name: str = "resnet-tiny", shape=(1, 8, 8), width: int = 8) -> Graph:
    """A graph after ``steps`` random morphs (deterministic for ``seed_value``)."""
    rng = random.Random(seed_value)
    graph = seed(name, shape, 10, width=width)
    for _ in range(steps):
        graph = random_morph(graph, rng)
    return graph


def renumbered(graph: Graph, rng: random.Random) -> Graph:
    """The same graph with fresh random ids, nodes listed in random order and every add's inputs shuffled."""
    ids = rng.sample(range(10_000, 10_000 + 4 * len(graph)), len(graph))
    new = dict(zip(graph.nodes, ids, strict=True))
    nodes = []
    for node in graph.nodes.values():
        ins = [new[i] for i in node.inputs]
        if isinstance(node.op, Add):
            rng.shuffle(ins)
        nodes.append(Node(new[node.id], node.op, tuple(ins)))
    rng.shuffle(nodes)
    return Graph(nodes, new[graph.output], graph.history)


def chain(input_shape, *ops: Op) -> Graph:
    ed = GraphEditor(input_shape=input_shape)
    x = ed.input_id
    for op in ops:
        x = ed.add(op, x)
    return ed.build()


# -- shape inference -------------------------------------------------------------------------------------------
SHAPE_CASES = [
    (Input(shape=(3, 32, 32)), [], (3, 32, 32)),
    (Conv(16, kernel_size=3, stride=1, padding=1), [(3, 32, 32)], (16, 32, 32)),
    (Conv(16, kernel_size=3, stride=2, padding=1), [(3, 32, 32)], (16, 16, 16)),
    (Conv(16, kernel_size=3, stride=2, padding=1), [(3, 7, 9)], (16, 4, 5)),
    (Conv(8, kernel_size=7, stride=2, padding=3), [(3, 224, 224)], (8, 112, 112)),
    (Conv(8, kernel_size=5, stride=1, padding=0), [(3, 8, 8)], (8, 4, 4)),
    (Conv(8, kernel_size=1, stride=2, padding=0), [(4, 7, 7)], (8, 4, 4)),
    (BatchNorm(), [(5, 6, 7)], (5, 6, 7)),
    (BatchNorm(), [(12,)], (12,)),
    (ReLU(), [(5, 6, 7)], (5, 6, 7)),
    (ReLU(), [(12,)], (12,)),
    (MaxPool(kernel_size=3, stride=2, padding=1), [(64, 112, 112)], (64, 56, 56)),
    (MaxPool(kernel_size=3, stride=2, padding=0), [(64, 112, 112)], (64, 55, 55)),
    (MaxPool(kernel_size=2, stride=2, padding=0), [(4, 9, 9)], (4, 4, 4)),
    (AvgPool(kernel_size=2, stride=2, padding=0), [(4, 8, 6)], (4, 4, 3)),
    (AvgPool(kernel_size=3, stride=1, padding=1), [(4, 5, 5)], (4, 5, 5)),
    (GlobalAvgPool(), [(32, 7, 5)], (32,)),
    (Flatten(), [(4, 3, 2)], (24,)),
    (Flatten(), [(24,)], (24,)),
    (Dense(10), [(24,)], (10,)),
    (Dropout(0.5), [(4, 3, 2)], (4, 3, 2)),
    (Dropout(0.5), [(24,)], (24,)),
    (Add(), [(4, 3, 2), (4, 3, 2)], (4, 3, 2)),
    (Add(), [(4, 3, 2), (4, 3, 2), (4, 3, 2)], (4, 3, 2)),
    (Add(), [(7,), (7,)], (7,)),
    (Concat(), [(4, 3, 2), (5, 3, 2)], (9, 3, 2)),
    (Concat(), [(4, 3, 2), (5, 3, 2), (1, 3, 2)], (10, 3, 2)),
    (Concat(), [(7,), (3,)], (10,)),
]


@pytest.mark.parametrize(
    ("op", "in_shapes", "expected"), SHAPE_CASES, ids=lambda v: repr(v) if isinstance(v, Op) else ""
)
def test_shape_inference_of_each_op(op: Op, in_shapes, expected) -> None:
    assert op.infer(in_shapes, "node 1") == expected


def test_shape_cases_cover_every_op_kind() -> None:
    assert {op.kind for op, _, _ in SHAPE_CASES} == set(OPS)


BAD_SHAPES = [
    (Input(shape=(3, 32)), [], "input shape"),
    (Input(shape=(3, 0, 4)), [], "positive"),
    (Conv(8), [(12,)], "image input"),
    (Conv(8), [(3, 8, 8), (3, 8, 8)], "needs 1 input"),
    (Conv(8, kernel_size=7, padding=0), [(3, 4, 4)], "does not fit"),
    (Conv(0), [(3, 8, 8)], "out_channels"),
    (Conv(8, stride=0), [(3, 8, 8)], "stride"),
    (Conv(8, padding=-1), [(3, 8, 8)], "padding"),
    (MaxPool(kernel_size=3, stride=2, padding=2), [(4, 8, 8)], "larger than half the kernel"),
    (MaxPool(kernel_size=5, stride=1, padding=0), [(4, 3, 3)], "does not fit"),
    (AvgPool(), [(12,)], "image input"),
    (GlobalAvgPool(), [(12,)], "image input"),
    (Dense(10), [(4, 3, 3)], "feature vector"),
    (Dense(0), [(12,)], "out_features"),
    (Dropout(1.0), [(12,)], "dropout rate"),
    (Dropout(-0.1), [(12,)], "dropout rate"),
    (Add(), [(4, 3, 3)], "at least 2 inputs"),
    (Add(), [(4, 3, 3), (5, 3, 3)], "one shape"),
    (Concat(), [(4, 3, 3), (4, 2, 3)], "differ only in channels"),
    (Concat(), [(4, 3, 3), (12,)], "differ only in channels"),
    (ReLU(), [], "needs 1 input"),
]


@pytest.mark.parametrize(("op", "in_shapes", "problem"), BAD_SHAPES, ids=lambda v: repr(v) if isinstance(v, Op) else "")
def test_inconsistent_shapes_are_refused_naming_the_node(op: Op, in_shapes, problem: str) -> None:
    with pytest.raises(ArchError, match=problem) as info:
        op.infer(in_shapes, "node 7 (test)")
    assert str(info.value).startswith("node 7 (test)")


def test_graph_records_the_shape_of_every_node() -> None:
    graph = chain(
        (1, 8, 8),
        Conv(4, 3, 1, 1),
        BatchNorm(),
        ReLU(),
        MaxPool(2, 2, 0),
        AvgPool(3, 1, 1),
        Dropout(0.1),
        Flatten(),
        Dense(6),
        ReLU(),
        Dense(3),
    )
    assert list(graph.shapes.values()) == [
        (1, 8, 8),
        (4, 8, 8),
        (4, 8, 8),
        (4, 8, 8),
        (4, 4, 4),
        (4, 4, 4),
        (4, 4, 4),
        (64,),
        (6,),
        (6,),
        (3,),
    ]
    assert graph.input_shape == (1, 8, 8)
    assert graph.num_classes == 3
    assert graph.num_params() == (9 * 1 * 4) + 2 * 4 + (64 * 6 + 6) + (6 * 3 + 3)


# -- canonical JSON --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("graph_seed", range(6))
def test_to_json_from_json_round_trip_keeps_everything(graph_seed: int) -> None:
    graph = apply_hyperparameters(morphed(graph_seed), dropout=0.25, kernel_size=5)
    data = graph.to_json()
    assert data["format"] == FORMAT and data["version"] == FORMAT_VERSION
    text = json.dumps(data)  # plain JSON, nothing Python-specific
    back = Graph.from_json(json.loads(text))
    assert back.to_json() == data
    assert list(back.nodes) == list(graph.nodes)
    assert back.nodes == graph.nodes
    assert back.shapes == graph.shapes
    assert back.output == graph.output
    assert back.history == graph.history
    assert back == graph and back.content_hash() == graph.content_hash()


@pytest.mark.parametrize("graph_seed", range(6))
def test_dumps_loads_round_trip_is_the_canonical_form(graph_seed: int) -> None:
    graph = morphed(graph_seed)
    text = graph.dumps()
    back = Graph.loads(text)
    assert list(back.nodes) == list(range(len(graph)))  # canonical ids 0..n-1
    assert back.dumps() == text  # a fixed point
    assert back.content_hash() == graph.content_hash()
    assert back.history == graph.history
    assert back.canonical().to_json() == back.to_json()
    assert Graph.loads(text.encode()).dumps() == text


def test_canonical_form_is_independent_of_numbering() -> None:
    rng = random.Random(7)
    graph = morphed(3)
    text = graph.dumps()
    for _ in range(5):
        assert renumbered(graph, rng).dumps() == text


# -- content hash ----------------------------------------------------------------------------------------------
def test_hash_is_stable_across_renumbering_and_add_input_order_for_many_graphs() -> None:
    rng = random.Random(2024)
    graphs = [
        seed(name, shape, classes) for name in ("resnet-tiny", "resnet18", "resnet50") for shape, classes in INPUTS
    ]
    graphs += [morphed(s, steps=rng.randint(1, 20), shape=rng.choice([(1, 8, 8), (3, 32, 32)])) for s in range(120)]
    for graph in graphs:
        expected = graph.content_hash()
        for _ in range(3):
            assert renumbered(graph, rng).content_hash() == expected, graph.history


def test_hash_ignores_history_and_add_input_order_but_not_concat_order() -> None:
    ed = GraphEditor(input_shape=(1, 8, 8))
    a = ed.add(Conv(4, 3, 1, 1), ed.input_id)
    b = ed.add(Conv(6, 1, 1, 0), ed.input_id)
    c = ed.add(Conv(4, 1, 1, 0), ed.input_id)
    ed.add(Add(), a, c)
    ed.add(Concat(), ed.output, b)
    ed.add(GlobalAvgPool(), ed.output)
    ed.add(Dense(3), ed.output)
    base = ed.build()
    nodes = dict(base.nodes)
    add_id, cat_id = (nid for nid, n in nodes.items() if n.op.kind in ("add", "concat"))
    swapped_add = {**nodes, add_id: Node(add_id, Add(), (c, a))}
    swapped_cat = {**nodes, cat_id: Node(cat_id, Concat(), (b, add_id))}
    assert Graph(swapped_add.values(), base.output).content_hash() == base.content_hash()
    assert Graph(swapped_cat.values(), base.output).content_hash() != base.content_hash()
    assert Graph(nodes.values(), base.output, [{"op": "anything"}]).content_hash() == base.content_hash()


def test_hash_is_stable_across_processes() -> None:
    """Same graph, fresh interpreter with a different hash seed: same digest (no id(), no set order)."""
    graph = morphed(11, steps=15)
    code = (
        "import random; from aiperf.arch import seed, random_morph\n"
        "rng = random.Random(11); g = seed('resnet-tiny', (1, 8, 8), 10, width=8)\n"
        "for _ in range(15): g = random_morph(g, rng)\n"
        "print(g.content_hash())"
    )
    for hash_seed in ("1", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"},
        )
        assert out.stdout.strip() == graph.content_hash()


def test_hash_of_a_seed_is_pinned() -> None:
    """A stored hash must mean the same graph in every later release: change FORMAT_VERSION before this value."""
    assert seed("resnet-tiny", (1, 8, 8), 10).content_hash() == PINNED_TINY_HASH


PINNED_TINY_HASH = "8a05292c27e93a55aa7df9ed89b0996543343bdd7883e34b83fac5a8659ac4a2"


def test_different_graphs_have_different_hashes() -> None:
    hashes: dict[str, str] = {}
    for name in SEEDS:
        for shape, classes in INPUTS:
            g = seed(name, shape, classes)
            hashes[f"{name}{shape}{classes}"] = g.content_hash()
    assert len(set(hashes.values())) == len(hashes)
    # every single parameter matters
    base = chain((1, 8, 8), Conv(4, 3, 1, 1), ReLU(), Dropout(0.5), GlobalAvgPool(), Dense(3))
    variants = [
        chain((1, 8, 8), Conv(5, 3, 1, 1), ReLU(), Dropout(0.5), GlobalAvgPool(), Dense(3)),
        chain((1, 8, 8), Conv(4, 5, 1, 2), ReLU(), Dropout(0.5), GlobalAvgPool(), Dense(3)),
        chain((1, 8, 8), Conv(4, 3, 2, 1), ReLU(), Dropout(0.5), GlobalAvgPool(), Dense(3)),
        chain((1, 8, 8), Conv(4, 3, 1, 0), ReLU(), Dropout(0.5), GlobalAvgPool(), Dense(3)),
        chain((1, 8, 8), Conv(4, 3, 1, 1, bias=True), ReLU(), Dropout(0.5), GlobalAvgPool(), Dense(3)),
        chain((1, 8, 8), Conv(4, 3, 1, 1), ReLU(), Dropout(0.25), GlobalAvgPool(), Dense(3)),
        chain((1, 8, 8), Conv(4, 3, 1, 1), ReLU(), Dropout(0.5), GlobalAvgPool(), Dense(4)),
        chain((1, 9, 8), Conv(4, 3, 1, 1), ReLU(), Dropout(0.5), GlobalAvgPool(), Dense(3)),
        chain((1, 8, 8), Conv(4, 3, 1, 1), Dropout(0.5), ReLU(), GlobalAvgPool(), Dense(3)),
        chain((1, 8, 8), Conv(4, 3, 1, 1), ReLU(), Dropout(0.5), Flatten(), Dense(3)),
    ]
    all_hashes = [base.content_hash()] + [v.content_hash() for v in variants]
    assert len(set(all_hashes)) == len(all_hashes)
    # every morph changes the graph, and so its hash
    graph = seed("resnet-tiny", (1, 8, 8), 10, width=8)
    rng = random.Random(5)
    seen = {graph.content_hash()}
    for _ in range(20):
        graph = random_morph(graph, rng)
        assert graph.content_hash() not in seen
        seen.add(graph.content_hash())


def test_twin_skip_projections_hash_the_same_whatever_their_ids() -> None:
    """Two identical projections of one tensor feeding different adds (the case that broke the first hash)."""
    graph = seed("resnet-small", (1, 8, 8), 10, width=8)
    dsts = [d for d in skip_targets(graph) if graph.shapes[d][1] == 4]
    src = next(s for s in skip_sources(graph, dsts[-1]) if graph.shapes[s][1] == 8)
    twin = add_skip(add_skip(graph, src, dsts[-1]), src, dsts[-2])
    convs = [n for n in twin.nodes.values() if isinstance(n.op, Conv) and src in n.inputs and n.op.kernel_size == 1]
    assert len({(n.op, n.inputs) for n in convs}) < len(convs), "expected two identical projections"
    rng = random.Random(0)
    for _ in range(10):
        assert renumbered(twin, rng).content_hash() == twin.content_hash()


def test_dropout_rate_zero_as_int_or_float_is_one_graph() -> None:
    a = chain((1, 8, 8), Conv(4), ReLU(), Dropout(0), GlobalAvgPool(), Dense(3))
    b = chain((1, 8, 8), Conv(4), ReLU(), Dropout(0.0), GlobalAvgPool(), Dense(3))
    assert a.content_hash() == b.content_hash()
    assert a.dumps() == b.dumps()


# -- hyperparameters that change the architecture --------------------------------------------------------------
def test_dropout_is_inserted_set_and_removed_before_the_classifier() -> None:
    graph = seed("resnet-tiny", (3, 32, 32), 10)
    assert graph.count("dropout") == 0
    with_drop = apply_hyperparameters(graph, dropout=0.3)
    assert with_drop.count("dropout") == 1
    head = with_drop.nodes[with_drop.output]
    feeding = with_drop.nodes[head.inputs[0]]
    assert isinstance(head.op, Dense) and feeding.op == Dropout(0.3)
    assert with_drop.num_params() == graph.num_params()
    assert with_drop.history[-1] == {"op": "hparams", "dropout": 0.3}
    assert len(with_drop.history) == len(graph.history) + 1

    reset = apply_hyperparameters(with_drop, dropout=0.6)
    assert reset.count("dropout") == 1
    assert reset.nodes[reset.nodes[reset.output].inputs[0]].op == Dropout(0.6)
    assert apply_hyperparameters(graph, dropout=0.6) == reset  # set == insert at that rate

    removed = apply_hyperparameters(reset, dropout=0.0)
    assert removed.count("dropout") == 0
    assert removed == graph
    assert apply_hyperparameters(graph, dropout=0.0) == graph  # nothing to remove


def test_kernel_size_of_late_convs_keeps_every_shape() -> None:
    for name in ("resnet-small", "resnet50"):
        for shape, classes in INPUTS[1:]:
            graph = seed(name, shape, classes)
            late = late_convs(graph)
            assert late, name
            smallest = min(graph.shapes[n][1] for n, node in graph.nodes.items() if isinstance(node.op, Conv))
            assert {graph.shapes[n][1] for n in late} == {smallest}
            for k in (1, 5, 7):
                changed = apply_hyperparameters(graph, kernel_size=k)
                assert changed.shapes == graph.shapes
                for nid, node in changed.nodes.items():
                    op = node.op
                    if nid in late:
                        assert isinstance(op, Conv) and op.kernel_size == k and op.padding == k // 2
                    else:
                        assert op == graph.nodes[nid].op
                c_in_out = sum(graph.in_shapes(n)[0][0] * graph.shapes[n][0] for n in late)
                old_k = graph.nodes[late[0]].op.kernel_size  # type: ignore[attr-defined]
                assert changed.num_params() - graph.num_params() == (k * k - old_k * old_k) * c_in_out


def test_bad_hyperparameters_are_refused() -> None:
    graph = seed("resnet-tiny", (1, 8, 8), 10)
    for bad in (4, 0, -3, 2.0, True):
        with pytest.raises(ArchError, match="kernel_size"):
            apply_hyperparameters(graph, kernel_size=bad)  # type: ignore[arg-type]
    for bad_rate in (1.0, -0.1, "0.5", True):
        with pytest.raises(ArchError, match="dropout"):
            apply_hyperparameters(graph, dropout=bad_rate)  # type: ignore[arg-type]


# -- seeds -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SEEDS))
@pytest.mark.parametrize(("shape", "classes"), INPUTS, ids=["imagenet", "cifar10", "digits"])
def test_every_seed_is_valid_for_every_required_input(name: str, shape, classes: int) -> None:
    graph = seed(name, shape, classes)
    blocks, block, width = SEEDS[name]
    assert graph.input_shape == shape
    assert graph.num_classes == classes
    expansion = 4 if block == "bottleneck" else 1
    assert graph.shapes[graph.nodes[graph.output].inputs[0]] == (width * 2 ** (len(blocks) - 1) * expansion,)
    assert graph.count("add") == sum(blocks)
    assert graph.count("maxpool") == (1 if shape[1] >= 64 else 0)
    assert min(s[1] for s in graph.shapes.values() if len(s) == 3) >= 1
    assert Graph.loads(graph.dumps()) == graph


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize(("shape", "classes"), INPUTS, ids=["imagenet", "cifar10", "digits"])
def test_resnet_families_of_any_depth_and_width(block: str, shape, classes: int) -> None:
    for blocks, width in (((1,), 4), ((2, 1), 8), ((1, 1, 1, 1, 1), 4)):
        graph = resnet(shape, classes, blocks, block, width)
        expansion = 4 if block == "bottleneck" else 1
        final = width * 2 ** (len(blocks) - 1) * expansion
        assert graph.shapes[graph.nodes[graph.output].inputs[0]] == (final,)
        assert graph.num_classes == classes
        per_block = 3 if block == "bottleneck" else 2
        projections = graph.count("conv") - 1 - per_block * sum(blocks)
        assert 0 <= projections <= len(blocks)  # at most one per stage, on its first block
        assert graph.count("add") == sum(blocks)
        sizes = sorted({s[1] for s in graph.shapes.values() if len(s) == 3}, reverse=True)
        assert sizes[-1] >= 1 and all(a > b for a, b in itertools.pairwise(sizes))


def test_resnet50_at_224_matches_torchvision_and_the_known_macs() -> None:
    graph = seed("resnet50")
    assert len(graph) == 175  # the input and 174 layers, as AIPerf's seed
    assert graph.num_params() == 25_557_032  # torchvision.models.resnet50
    macs = flops.forward_flops(graph) / 2
    assert macs == 4_089_184_256
    assert macs == pytest.approx(4.09e9, rel=1e-3)
    # the original v1 layout (stride on the first 1x1 conv, AIPerf's seed) is the paper's 3.86 GMACs
    v1 = resnet(blocks=(3, 4, 6, 3), block="bottleneck", stride_on_3x3=False)
    assert v1.num_params() == 25_557_032
    assert flops.forward_flops(v1) / 2 == pytest.approx(3.86e9, rel=1e-3)


@pytest.mark.parametrize(
    ("name", "params"), [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet101", 44_549_160)]
)
def test_basic_and_deep_seeds_match_torchvision_parameter_counts(name: str, params: int) -> None:
    assert seed(name).num_params() == params


def test_bad_seed_arguments() -> None:
    with pytest.raises(ArchError, match="unknown seed"):
        seed("vgg16")
    with pytest.raises(ArchError, match="block"):
        resnet(block="dense")
    with pytest.raises(ArchError, match="input_shape"):
        resnet(input_shape=(3, 32))
    with pytest.raises(ArchError, match="at least one stage"):
        resnet(blocks=())
