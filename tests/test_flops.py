"""Analytical FLOPs against torch's FlopCounterMode, and AIPerf v1's convention on hand-computed graphs."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from aiperf import flops
from aiperf.arch import (
    Add,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    GlobalAvgPool,
    Graph,
    GraphEditor,
    MaxPool,
    ReLU,
    build_module,
    load_nni,
    random_morph,
    resnet,
    seed,
    to_nni_json,
)

DATA = Path(__file__).resolve().parent / "data" / "arch"


@pytest.fixture(autouse=True, scope="module")
def _threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: a second thread only adds contention on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def worst(request: pytest.FixtureRequest) -> Iterator[dict[str, tuple[float, float, int]]]:
    """family -> (worst forward error, worst training error, graphs checked); printed when the module ends."""
    table: dict[str, tuple[float, float, int]] = {}
    yield table
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not table:
        return
    with capture.global_and_fixture_disabled():  # shown in every CI log, not only with -s
        reporter.write_line("")
        reporter.write_line("FLOPs vs FlopCounterMode, worst relative error per family (forward / forward+backward):")
        for family, (fwd, train, count) in table.items():
            reporter.write_line(f"  {family:<28} {fwd:.2e} / {train:.2e}  ({count} graphs)")


def measured(graph: Graph, batch: int = 2) -> tuple[float, float]:
    """FlopCounterMode's forward and forward+backward FLOPs per image of the built module (training mode)."""
    torch.manual_seed(0)
    module = build_module(graph)
    x = torch.randn(batch, *graph.input_shape)
    with FlopCounterMode(display=False) as counter:
        module(x)
    forward = counter.get_total_flops() / batch
    with FlopCounterMode(display=False) as counter:
        module(x).sum().backward()
    return forward, counter.get_total_flops() / batch


def check_family(graphs: list[Graph], family: str, worst: dict[str, tuple[float, float, int]]) -> None:
    worst_fwd = worst_train = 0.0
    for graph in graphs:
        fwd, train = measured(graph)
        err_fwd = abs(flops.forward_flops(graph) - fwd) / fwd
        err_train = abs(flops.training_flops(graph) - train) / train
        assert err_fwd <= 0.01, (family, graph.history, flops.forward_flops(graph), fwd)
        assert err_train <= 0.02, (family, graph.history, flops.training_flops(graph), train)
        assert flops.num_params(graph) == sum(p.numel() for p in build_module(graph).parameters())
        worst_fwd, worst_train = max(worst_fwd, err_fwd), max(worst_train, err_train)
    worst[family] = (worst_fwd, worst_train, len(graphs))


def morphs(count: int, shape: tuple[int, int, int], salt: str) -> list[Graph]:
    graphs = []
    for index in range(count):
        rng = random.Random(f"{salt}/{index}")
        start = rng.choice(
            [
                seed("resnet-tiny", shape, 10, width=8),
                seed("resnet-small", shape, 10, width=8),
                resnet(shape, 10, (1, 1), "bottleneck", 4),
            ]
        )
        graph = start
        for _ in range(rng.randint(1, 20)):
            graph = random_morph(graph, rng)
        graphs.append(graph)
    return graphs


FAMILIES: dict[str, Callable[[], list[Graph]]] = {
    "basic 8x8x1": lambda: [seed(n, (1, 8, 8), 10) for n in ("resnet-tiny", "resnet-small", "resnet18", "resnet34")],
    "basic 32x32x3": lambda: (
        [seed(n, (3, 32, 32), 10) for n in ("resnet-tiny", "resnet-small", "resnet18")]
        + [seed("resnet34", (3, 32, 32), 10, width=32)]
    ),
    "bottleneck 8x8x1": lambda: [seed("resnet50", (1, 8, 8), 10), seed("resnet101", (1, 8, 8), 10, width=32)],
    "bottleneck 32x32x3": lambda: [
        seed("resnet50", (3, 32, 32), 10, width=16),
        seed("resnet101", (3, 32, 32), 10, width=8),
        resnet((3, 32, 32), 10, (2, 2, 2), "bottleneck", 16, stride_on_3x3=False),
    ],
    "basic+bottleneck 224x224x3": lambda: [
        resnet((3, 224, 224), 1000, (1, 1, 1, 1), "basic", 8),
        resnet((3, 224, 224), 1000, (1, 1, 1, 1), "bottleneck", 4, stride_on_3x3=False),
    ],
    "NNI fixtures": lambda: [load_nni((DATA / n).read_text()) for n in ("nni_branches.json", "nni_aiperf_stem.json")],
    "random morphs 8x8x1": lambda: morphs(30, (1, 8, 8), "flops8"),
    "random morphs 32x32x3": lambda: morphs(20, (3, 32, 32), "flops32"),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_flops_match_flop_counter_mode(family: str, worst: dict[str, tuple[float, float, int]]) -> None:
    check_family(FAMILIES[family](), family, worst)


def test_fifty_random_morphs_are_checked() -> None:
    assert len(FAMILIES["random morphs 8x8x1"]()) + len(FAMILIES["random morphs 32x32x3"]()) == 50


# -- the convention on a hand-computed graph -------------------------------------------------------------------
def tiny_graph() -> Graph:
    """(1,4,4) -> conv3x3 ->(2,4,4) BN ReLU maxpool2 ->(2,2,2) conv3x3 + pooled -> ReLU GAP dropout dense(3)."""
    ed = GraphEditor(input_shape=(1, 4, 4))
    x = ed.add(Conv(2, 3, 1, 1), ed.input_id)
    x = ed.add(BatchNorm(), x)
    x = ed.add(ReLU(), x)
    pooled = ed.add(MaxPool(2, 2, 0), x)
    y = ed.add(Conv(2, 3, 1, 1), pooled)
    y = ed.add(Add(), y, pooled)
    y = ed.add(ReLU(), y)
    y = ed.add(GlobalAvgPool(), y)
    y = ed.add(Dropout(0.5), y)
    ed.add(Dense(3), y)
    return ed.build()


def test_forward_and_training_flops_by_hand() -> None:
    graph = tiny_graph()
    conv1 = 2 * (3 * 3 * 1 * 2) * (4 * 4)  # 576
    conv2 = 2 * (3 * 3 * 2 * 2) * (2 * 2)  # 288
    dense = 2 * 2 * 3  # 12
    assert flops.forward_flops(graph) == conv1 + conv2 + dense == 876
    # the first conv reads the data: weight gradient only (1x); the others also compute input gradients (2x)
    assert flops.training_flops(graph) == 2 * conv1 + 3 * conv2 + 3 * dense == 2052
    assert flops.num_params(graph) == 18 + 4 + 36 + (6 + 3) == 67
    rows = {row.kind: row for row in flops.layer_table(graph) if row.forward}
    assert rows["dense"].backward == 2 * rows["dense"].forward
    assert sum(r.training for r in flops.layer_table(graph)) == flops.training_flops(graph)
    assert sum(r.params for r in flops.layer_table(graph)) == flops.num_params(graph)


def test_backward_is_twice_forward_except_for_the_first_layer() -> None:
    graph = seed("resnet18", (3, 32, 32), 10)
    rows = [row for row in flops.layer_table(graph) if row.forward]
    assert rows[0].kind == "conv" and rows[0].backward == rows[0].forward
    assert all(row.backward == 2 * row.forward for row in rows[1:])
    ratio = flops.training_flops(graph) / flops.forward_flops(graph)
    assert ratio == pytest.approx(3 - rows[0].forward / flops.forward_flops(graph))
    assert 2.9 < ratio < 3.0


def test_v1_convention_by_hand() -> None:
    v1 = flops.aiperf_v1_flops(tiny_graph())
    forward = (
        2 * (9 * 1 * 2) * 16  # conv1: 2 k^2 Cin Cout Ho Wo = 576
        + 7 * 32  # BN over 2x4x4: multiply-accumulate (2) + add (1) + divide (4) per element = 224
        + 32  # ReLU: one comparison per element
        + 32 * 2 * 2 / 2 / 2  # max pooling: n k^2 / s^2 = 32
        + 2 * (9 * 2 * 2) * 4  # conv2 = 288
        + 8  # add: one per element of its first input
        + 8  # ReLU
        + (2 * 2 - 1) * 2
        + 4 * 2  # global pooling: (HW - 1) C adds + C divides (4 each) = 14
        + 0  # dropout
        + 2 * 2 * 3
        + (8 * 3 + (3 - 1) + 4 * 3)  # dense 12 + the softmax AIPerf adds to every dense: 38
    )
    backward = (
        (9 * 1 * 2) * (2 * 16 + 2)  # first conv: k^2 Cin Cout (2 Ho Wo + 2) = 612
        + 36  # BN: (29 n + 7) / n with n = 1 image, per layer
        + (9 * 2 * 2) * (4 * 4 + 2)  # other convs: k^2 Cin Cout (4 Ho Wo + 2) = 648
        + 2 * (2 * 2 * 3)
        + 2 * (2 + 1) * 3  # dense: 24 + 18 = 42
    )
    assert forward == 1232 and backward == 1338
    assert v1 == flops.V1Flops(forward=forward, backward=backward)
    assert v1.training == 2570


def v1_from_nni_file(data: dict[str, Any]) -> tuple[float, float]:
    """AIPerf's profiler procedure as stated in its source: walk the file's layer list, read shapes from node_list
    (channels last), size conv outputs from the padding field, the first conv in the list has no input gradient."""
    shapes = {n: s for n, s in data["node_list"]}
    forward = backward = 0.0
    first = True
    for _, (kind, src, _dst, *params) in data["layer_list"]:
        if kind == "StubConv2d":
            c_in, c_out, k, stride, pad = params
            out = (shapes[src][0] + 2 * pad - k) // stride + 1
            forward += 2 * out * out * k * k * c_in * c_out
            backward += k * k * c_in * c_out * ((2 if first else 4) * out * out + 2)
            first = False
        elif kind == "StubDense":
            f_in, f_out = params
            forward += 2 * f_in * f_out + 8 * f_out + (f_out - 1) + 4 * f_out
            backward += 4 * f_in * f_out + 2 * (f_in + 1) * f_out
        elif kind == "StubBatchNormalization2d":
            forward += 7 * math.prod(shapes[src])
            backward += 36
        elif kind == "StubReLU":
            forward += math.prod(shapes[src])
        elif kind == "StubPooling2d":
            forward += math.prod(shapes[src]) * params[0] ** 2 / params[1] ** 2
        elif kind == "StubGlobalPooling2d":
            h, w, c = shapes[src]
            forward += (h * w - 1) * c + 4 * c
        elif kind == "StubAdd":
            forward += math.prod(shapes[src[0]])
    return forward, backward


def test_v1_convention_matches_the_profiler_procedure_on_aiperf_files() -> None:
    aiperf_resnet50 = resnet(blocks=(3, 4, 6, 3), block="bottleneck", stride_on_3x3=False)
    data = to_nni_json(aiperf_resnet50)
    for _, desc in data["layer_list"]:
        if desc[0] == "StubPooling2d":
            desc[5] = 0  # as AIPerf's resnet50.json writes it
    v1 = flops.aiperf_v1_flops(aiperf_resnet50)
    assert (v1.forward, v1.backward) == v1_from_nni_file(data)
    # AIPerf's seed: about 1% more than the matmul-only count, the rest being element-wise terms
    assert v1.forward == pytest.approx(7.8066e9, rel=1e-4)
    assert v1.training == pytest.approx(23.053e9, rel=1e-4)
    assert v1.forward / flops.forward_flops(aiperf_resnet50) == pytest.approx(1.0117, abs=1e-3)
    for name in ("nni_aiperf_stem.json",):
        text = (DATA / name).read_text()
        v1 = flops.aiperf_v1_flops(load_nni(text))
        assert (v1.forward, v1.backward) == v1_from_nni_file(json.loads(text))
    for graph in morphs(5, (3, 32, 32), "v1"):
        v1 = flops.aiperf_v1_flops(graph)
        assert (v1.forward, v1.backward) == v1_from_nni_file(to_nni_json(graph))
        assert v1.forward > flops.forward_flops(graph)
