"""The torch builder: parameters, shapes, channels_last, autocast and torch.compile."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from aiperf.arch import (
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
    MaxPool,
    ReLU,
    apply_hyperparameters,
    build_module,
    load_nni,
    random_morph,
    resnet,
    seed,
)
from aiperf.arch._torch import GraphModule


@pytest.fixture(autouse=True, scope="module")
def _threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only adds contention on a shared machine
    yield
    torch.set_num_threads(before)


def module_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def every_op_graph() -> Graph:
    """A small graph holding every op kind, with a strided concat skip and an add skip."""
    ed = GraphEditor(input_shape=(3, 12, 12))
    x = ed.add(Conv(8, 3, 1, 1), ed.input_id)
    x = ed.add(BatchNorm(), x)
    a = ed.add(ReLU(), x)
    y = ed.add(Conv(8, 5, 1, 2, bias=True), a)
    y = ed.add(BatchNorm(), y)
    y = ed.add(Add(), y, a)
    y = ed.add(ReLU(), y)
    s = ed.add(Conv(12, 3, 2, 1), y)
    s = ed.add(ReLU(), s)
    p = ed.add(MaxPool(3, 2, 1), a)
    cat = ed.add(Concat(), s, p)
    z = ed.add(AvgPool(2, 2, 0), cat)
    z = ed.add(Dropout(0.2), z)
    f = ed.add(Flatten(), z)
    g = ed.add(GlobalAvgPool(), cat)
    v = ed.add(Concat(), f, g)
    v = ed.add(Dense(16), v)
    v = ed.add(BatchNorm(), v)
    v = ed.add(ReLU(), v)
    ed.add(Dense(5), v)
    return ed.build()


def morphs(count: int, shape=(1, 8, 8)) -> list[Graph]:
    graphs = []
    for s in range(count):
        rng = random.Random(1000 + s)
        graph = seed(rng.choice(["resnet-tiny", "resnet-small"]), shape, 10, width=8)
        for _ in range(rng.randint(1, 20)):
            graph = random_morph(graph, rng)
        graphs.append(graph)
    return graphs


def check_every_node_shape(graph: Graph, module: GraphModule, x: torch.Tensor) -> None:
    """Run ``x`` through ``module`` and compare each layer's input and output with the IR's shapes."""
    seen: list[int] = []
    handles = []
    for key, layer in module.layers.items():
        nid = int(key)

        def pre(_m, args, nid=nid):
            assert tuple(args[0].shape[1:]) == graph.in_shapes(nid)[0], f"input of node {nid}"

        def post(_m, _args, out, nid=nid):
            assert tuple(out.shape[1:]) == graph.shapes[nid], f"output of node {nid}"
            seen.append(nid)

        handles += [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post)]
    try:
        out = module(x)
    finally:
        for h in handles:
            h.remove()
    assert out.shape == (x.shape[0], graph.num_classes)
    assert sorted(seen) == sorted(int(k) for k in module.layers)


# -- parameters and shapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SEEDS))
def test_parameter_count_of_every_seed(name: str) -> None:
    for shape, classes in (((3, 32, 32), 10), ((1, 8, 8), 10)):
        graph = seed(name, shape, classes)
        assert module_params(build_module(graph)) == graph.num_params()


def test_parameter_count_of_resnet50_at_224_is_torchvision_s() -> None:
    module = build_module(seed("resnet50"))
    assert module_params(module) == 25_557_032


def test_parameter_count_and_shapes_of_random_morphs() -> None:
    for graph in morphs(15, (1, 8, 8)) + morphs(5, (3, 32, 32)):
        module = build_module(graph)
        assert module_params(module) == graph.num_params(), graph.history
        check_every_node_shape(graph, module, torch.randn(2, *graph.input_shape))


def test_every_op_kind_builds_with_the_inferred_shapes() -> None:
    graph = every_op_graph()
    assert {n.op.kind for n in graph.nodes.values()} == set(OPS)
    module = build_module(graph)
    assert module_params(module) == graph.num_params()
    check_every_node_shape(graph, module, torch.randn(3, 3, 12, 12))
    out = module(torch.randn(3, 3, 12, 12))
    out.sum().backward()
    assert all(p.grad is not None for p in module.parameters())


def test_imported_nni_graph_builds() -> None:
    graph = load_nni((Path(__file__).resolve().parent / "data" / "arch" / "nni_branches.json").read_text())
    module = build_module(graph)
    assert module_params(module) == graph.num_params() == 138_874
    check_every_node_shape(graph, module, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize(("shape", "classes"), [((1, 8, 8), 10), ((3, 32, 32), 10), ((3, 224, 224), 1000)])
def test_forward_output_shape(shape, classes: int) -> None:
    for block in ("basic", "bottleneck"):
        graph = resnet(shape, classes, (1, 1, 1, 1), block, 8)
        module = build_module(graph)
        check_every_node_shape(graph, module, torch.randn(2, *shape))


def test_dropout_is_live_in_training_and_off_in_eval() -> None:
    graph = apply_hyperparameters(seed("resnet-tiny", (1, 8, 8), 10, width=8), dropout=0.5)
    module = build_module(graph)
    x = torch.randn(4, 1, 8, 8)
    module.eval()
    assert torch.equal(module(x), module(x))
    module.train()
    torch.manual_seed(0)
    first = module(x)
    assert not torch.allclose(first, module(x))


# -- memory format and precision -------------------------------------------------------------------------------
def test_channels_last_gives_the_same_function() -> None:
    graph = morphs(1, (3, 32, 32))[0]
    torch.manual_seed(0)
    module = build_module(graph).eval()
    x = torch.randn(4, 3, 32, 32)
    reference = module(x)
    module = module.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    out = module(xc)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)
    module.train()
    module(xc).sum().backward()
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_bf16_autocast_runs_forward_and_backward() -> None:
    graph = every_op_graph()
    torch.manual_seed(0)
    module = build_module(graph).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 12, 12).contiguous(memory_format=torch.channels_last)
    module.eval()
    reference = module(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, rtol=0.1, atol=0.1)
    module.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(module(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grads = [p.grad for p in module.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")  # torch.compile's own internals
def test_torch_compile_smoke() -> None:
    """~30 s here with a cold inductor cache (5 s warm): one small graph, forward and backward."""
    graph = every_op_graph()
    torch.manual_seed(0)
    module = build_module(graph).eval()
    x = torch.randn(4, 3, 12, 12)
    compiled = torch.compile(module)
    torch.testing.assert_close(compiled(x), module(x), rtol=1e-4, atol=1e-4)
    compiled.train()
    compiled(x).sum().backward()
    assert all(p.grad is not None for p in module.parameters())
