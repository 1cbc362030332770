"""Import and export of the AIPerf / NNI network-morphism graph JSON."""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from aiperf.arch import (
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
    MaxPool,
    Node,
    ReLU,
    from_nni_json,
    load_nni,
    random_morph,
    resnet,
    seed,
    to_nni_json,
)
from aiperf.errors import ArchError

DATA = Path(__file__).resolve().parent / "data" / "arch"


def load_fixture(name: str) -> Graph:
    return load_nni((DATA / name).read_text())


def with_conv_bias(graph: Graph) -> Graph:
    """``graph`` with a bias on every conv: what NNI's rebuilders give (its format has no bias field)."""
    nodes = []
    for node in graph.nodes.values():
        op = node.op
        if isinstance(op, Conv):
            op = Conv(op.out_channels, op.kernel_size, op.stride, op.padding, bias=True)
        nodes.append(Node(node.id, op, node.inputs))
    return Graph(nodes, graph.output)


def pooling_graph_json(size: int, kernel: int, stride: int, declared: int, padding_field: int = 0) -> dict[str, Any]:
    """Input -> max pooling (declared output ``declared``) -> global pooling -> dense, in NNI's layout."""
    return {
        "input_shape": [size, size, 4],
        "node_list": [[0, [size, size, 4]], [1, [declared, declared, 4]], [2, [4]], [3, [2]]],
        "layer_list": [
            [0, ["StubPooling2d", 0, 1, kernel, stride, padding_field]],
            [1, ["StubGlobalPooling2d", 1, 2]],
            [2, ["StubDense", 2, 3, 4, 2]],
        ],
    }


# -- fixtures written in AIPerf's layout ------------------------------------------------------------------------
def test_aiperf_stem_fixture_imports_with_same_pooling() -> None:
    graph = load_fixture("nni_aiperf_stem.json")
    assert len(graph) == 19
    assert graph.input_shape == (3, 224, 224)
    assert graph.num_classes == 1000
    # layer 3 is ["StubPooling2d", 3, 4, 3, 2, 0] with tensor 4 declared [56, 56, 64]
    pool = graph.nodes[4]
    assert isinstance(pool.op, MaxPool)
    assert graph.shapes[3] == (64, 112, 112)
    assert graph.shapes[4] == (64, 56, 56) == (64, math.ceil(112 / 2), math.ceil(112 / 2))
    # "same" pads 1 in all (0 before, 1 after); the symmetric PyTorch padding that gives that size is 1
    assert (pool.op.kernel_size, pool.op.stride, pool.op.padding) == (3, 2, 1)
    # NNI rebuilds every conv "same" (kernel // 2) and with a bias
    convs = [n.op for n in graph.nodes.values() if isinstance(n.op, Conv)]
    assert len(convs) == 5 and all(c.bias and c.padding == c.kernel_size // 2 for c in convs)
    assert graph.nodes[15].op == Add() and set(graph.nodes[15].inputs) == {13, 14}
    assert graph.shapes[17] == (256,) and isinstance(graph.nodes[17].op, GlobalAvgPool)
    assert graph.nodes[18].op == Dense(1000) and graph.output == 18
    # conv 7x7 3->64, BN, 1x1 64->64, BN, 3x3 64->64, BN, two 1x1 64->256, two BN(256), dense 256->1000
    expected = (49 * 3 * 64 + 64) + 128 + (64 * 64 + 64) + 128 + (9 * 64 * 64 + 64) + 128
    expected += 2 * (64 * 256 + 256) + 2 * 512 + (256 * 1000 + 1000)
    assert graph.num_params() == expected == 342_248
    assert graph.history == ({"op": "import", "format": "nni"},)


def test_branches_fixture_covers_concat_flatten_dropout_and_softmax() -> None:
    graph = load_fixture("nni_branches.json")
    kinds = [n.op.kind for n in graph.nodes.values()]
    for kind in ("concat", "flatten", "dropout", "dense", "maxpool", "conv", "bn", "relu"):
        assert kind in kinds
    assert len(graph) == 19  # 19 layers + input - the softmax, which the IR drops (its output is logits)
    assert graph.output == 18 and graph.nodes[18].op == Dense(10)
    cat = graph.nodes[9]
    assert isinstance(cat.op, Concat) and cat.inputs == (7, 8)  # order kept: concat is not commutative
    assert graph.shapes[9] == (48, 16, 16)
    assert graph.shapes[14] == (2048,)
    assert sorted(n.op.rate for n in graph.nodes.values() if isinstance(n.op, Dropout)) == [0.1, 0.5]
    assert graph.num_params() == 138_874


# -- "same" pooling semantics -----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 7, 8, 55, 56, 112, 113])
@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (2, 2), (3, 1), (5, 2), (3, 3)])
def test_pooling_declared_as_same_imports_with_the_same_size(size: int, kernel: int, stride: int) -> None:
    declared = math.ceil(size / stride)  # Keras / MindSpore "same"
    if (size + 2 * (kernel // 2) - kernel) // stride + 1 < declared:
        with pytest.raises(ArchError, match="no padding"):
            from_nni_json(pooling_graph_json(size, kernel, stride, declared))
        return
    graph = from_nni_json(pooling_graph_json(size, kernel, stride, declared))
    op = graph.nodes[1].op
    assert isinstance(op, MaxPool) and (op.kernel_size, op.stride) == (kernel, stride)
    assert graph.shapes[1] == (4, declared, declared)
    assert op.padding <= kernel // 2


def test_even_kernel_same_pooling_at_stride_one_is_refused() -> None:
    """'same' with a 2x2 window at stride 1 pads 0 before and 1 after: no symmetric padding gives that size."""
    with pytest.raises(ArchError, match=r"layer 0 \(StubPooling2d\): no padding"):
        from_nni_json(pooling_graph_json(8, 2, 1, 8))


# -- round trip ------------------------------------------------------------------------------------------------
def round_trip_cases() -> list[Graph]:
    graphs = [
        seed("resnet-tiny", (1, 8, 8), 10),
        seed("resnet18", (3, 32, 32), 10),
        seed("resnet50", (3, 224, 224), 1000),
        resnet((3, 66, 66), 10, (1, 1), "basic", 8),  # odd 33x33 map into the max pooling
        load_fixture("nni_branches.json"),
    ]
    for s in range(8):
        rng = random.Random(s)
        graph = seed("resnet-small", rng.choice([(1, 8, 8), (3, 32, 32)]), 10, width=8)
        for _ in range(rng.randint(1, 20)):
            graph = random_morph(graph, rng)
        graphs.append(graph)
    return graphs


@pytest.mark.parametrize("index", range(13))
def test_to_nni_json_from_nni_json_round_trip(index: int) -> None:
    graph = round_trip_cases()[index]
    data = to_nni_json(graph)
    assert json.loads(json.dumps(data)) == data
    back = load_nni(json.dumps(data))
    assert back == with_conv_bias(graph)
    assert back.shapes[back.output] == graph.shapes[graph.output]
    again = from_nni_json(to_nni_json(back))
    assert again == back  # a fixed point
    assert to_nni_json(again) == to_nni_json(back)


def test_exported_layout_is_self_consistent() -> None:
    graph = round_trip_cases()[-1]
    data = to_nni_json(graph)
    shapes = dict((n, s) for n, s in data["node_list"])
    assert [lid for lid, _ in data["layer_list"]] == list(range(len(data["layer_list"])))
    for lid, desc in data["layer_list"]:
        ins = desc[1] if isinstance(desc[1], list) else [desc[1]]
        assert data["layer_id_to_input_node_ids"][str(lid)] == ins
        assert data["layer_id_to_output_node_ids"][str(lid)] == [desc[2]]
        for src in ins:
            assert [desc[2], lid] in data["adj_list"][str(src)]
            assert [src, lid] in data["reverse_adj_list"][str(desc[2])]
        if desc[0] == "StubConv2d":
            assert shapes[ins[0]][-1] == desc[3] and shapes[desc[2]][-1] == desc[4]
    c, h, w = graph.input_shape
    assert data["input_shape"] == shapes[0] == [h, w, c]  # channels last; the input is tensor 0


# -- AIPerf's own ResNet-50 seed -------------------------------------------------------------------------------
def aiperf_resnet50_json() -> dict[str, Any]:
    """AIPerf's seed layout: ResNet-50 v1 (stride on the first 1x1), written as AIPerf writes its pooling."""
    data = to_nni_json(resnet(blocks=(3, 4, 6, 3), block="bottleneck", stride_on_3x3=False))
    for _, desc in data["layer_list"]:
        if desc[0] == "StubPooling2d":
            desc[5] = 0  # AIPerf's file: ["StubPooling2d", 3, 4, 3, 2, 0]
    return data


def test_aiperf_resnet50_seed_layout_imports() -> None:
    data = aiperf_resnet50_json()
    assert len(data["node_list"]) == 175 and len(data["layer_list"]) == 174
    pools = [desc for _, desc in data["layer_list"] if desc[0] == "StubPooling2d"]
    assert len(pools) == 1 and pools[0][3:] == [3, 2, 0]
    assert dict((n, s) for n, s in data["node_list"])[pools[0][2]] == [56, 56, 64]
    graph = from_nni_json(copy.deepcopy(data))
    assert len(graph) == 175
    assert sum(1 for n in graph.nodes.values() if n.op.kind != "input") == 174
    head = graph.nodes[graph.output]
    gap = graph.nodes[head.inputs[0]]
    assert head.op == Dense(1000) and graph.in_shapes(graph.output) == [(2048,)]
    assert isinstance(gap.op, GlobalAvgPool) and graph.in_shapes(gap.id) == [(2048, 7, 7)]
    (pool,) = [n for n in graph.nodes.values() if isinstance(n.op, MaxPool)]
    assert graph.in_shapes(pool.id) == [(64, 112, 112)] and graph.shapes[pool.id] == (64, 56, 56)
    assert pool.op.padding == 1  # the padding that makes 112 -> 56, as NNI's "same"
    assert graph.count("conv") == 53 and graph.count("add") == 16 and graph.count("bn") == 53
    # same structure as the v1 seed, plus a bias on each of the 53 convs (26,560 channels)
    v1 = resnet(blocks=(3, 4, 6, 3), block="bottleneck", stride_on_3x3=False)
    assert graph == with_conv_bias(v1)
    conv_channels = sum(n.op.out_channels for n in v1.nodes.values() if isinstance(n.op, Conv))
    assert graph.num_params() == 25_557_032 + conv_channels == 25_583_592


# -- what the format cannot hold -------------------------------------------------------------------------------
def test_export_refuses_what_nni_cannot_rebuild() -> None:
    def small(*ops) -> Graph:
        ed = GraphEditor(input_shape=(2, 8, 8))
        x = ed.input_id
        for op in ops:
            x = ed.add(op, x)
        return ed.build()

    with pytest.raises(ArchError, match=r"node \d+ \(avgpool\): NNI's graph format has no avgpool"):
        to_nni_json(small(AvgPool(2, 2, 0), GlobalAvgPool(), Dense(2)))
    with pytest.raises(ArchError, match=r"node \d+ \(conv\): NNI pads convs"):
        to_nni_json(small(Conv(4, 3, 1, 0), GlobalAvgPool(), Dense(2)))
    with pytest.raises(ArchError, match=r"node \d+ \(maxpool\): NNI sizes pooling output"):
        to_nni_json(small(MaxPool(3, 2, 0), GlobalAvgPool(), Dense(2)))  # 8 -> 3, not ceil(8 / 2)
    # what it can hold goes through
    assert load_nni(json.dumps(to_nni_json(small(MaxPool(2, 2, 0), ReLU(), BatchNorm(), Flatten(), Dense(2)))))


def test_load_file_reads_either_format(tmp_path: Path) -> None:
    from aiperf.arch import load_file, resnet, to_nni_json
    from aiperf.errors import ArchError

    graph = resnet((3, 32, 32), 10, (1, 1), "basic", 8)
    (tmp_path / "own.json").write_text(graph.dumps())
    (tmp_path / "nni.json").write_text(json.dumps(to_nni_json(graph)))
    assert load_file(tmp_path / "own.json") == graph
    imported = load_file(tmp_path / "nni.json")  # NNI convs carry a bias; the structure is the same
    assert len(imported) == len(graph) and imported.shapes[imported.output] == (10,)
    with pytest.raises(ArchError, match="cannot read architecture file"):
        load_file(tmp_path / "missing.json")
