"""Bad architectures: every user mistake is an ArchError naming the layer and the problem, raised before any
large allocation; the CLI turns it into one line and exit status 2."""

from __future__ import annotations

import copy
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aiperf import flops
from aiperf.arch import ArchLimits, Graph, build_module, from_nni_json, load_nni, random_morph, seed, widen
from aiperf.errors import AiperfError, ArchError

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "arch"


def small() -> dict[str, Any]:
    return json.loads((DATA / "arch_small.json").read_text())


def nni() -> dict[str, Any]:
    return json.loads((DATA / "nni_branches.json").read_text())


def node(data: dict[str, Any], nid: int) -> dict[str, Any]:
    return next(n for n in data["nodes"] if n["id"] == nid)


def layer(data: dict[str, Any], layer_id: int) -> list[Any]:
    return next(desc for lid, desc in data["layer_list"] if lid == layer_id)


def mutated(base: Callable[[], dict[str, Any]], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = copy.deepcopy(base())
    change(data)
    return data


def test_fixtures_are_valid_before_mutation() -> None:
    assert Graph.from_json(small()).num_params() == 238
    assert from_nni_json(nni()).num_classes == 10


# -- aiperf's own JSON -----------------------------------------------------------------------------------------
AIPERF_CASES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "unknown layer type": (
        lambda d: node(d, 3).update(op="lstm"),
        r"^node 3 \(lstm\): unknown layer type 'lstm' \(known: ",
    ),
    "unknown field": (
        lambda d: node(d, 1).update(dilation=2),
        r"^node 1 \(conv\): conv has unknown field\(s\) \['dilation'\]",
    ),
    "wrong field type": (
        lambda d: node(d, 4).update(kernel_size="3"),
        r"^node 4 \(conv\): conv.kernel_size must be an integer, got '3'",
    ),
    "declared shape disagrees": (
        lambda d: node(d, 4).update(out_shape=[8, 8, 8]),
        r"^node 4 \(conv\): declared shape \[8, 8, 8\] but its inputs give \[4, 8, 8\]",
    ),
    "add of two shapes": (
        lambda d: node(d, 4).update(out_channels=6, out_shape=[6, 8, 8]),
        r"^node 5 \(add\): add needs inputs of one shape, got \[\[6, 8, 8\], \[4, 8, 8\]\]",
    ),
    "dense on an image": (
        lambda d: node(d, 7).update(inputs=[5]),
        r"^node 7 \(dense\): dense needs a feature vector, got shape \[4, 8, 8\]",
    ),
    "dangling edge": (
        lambda d: node(d, 5).update(inputs=[4, 42]),
        r"^node 5 \(add\): input 42 does not exist \(dangling edge\)",
    ),
    "cycle": (
        lambda d: node(d, 1).update(inputs=[5]) or d["nodes"].append({"id": 8, "op": "relu", "inputs": [0]}),
        r"^graph has a cycle: node \d \(\w+\) -> .* -> node \d \(\w+\)$",
    ),
    "unreachable node": (
        lambda d: d["nodes"].append({"id": 8, "op": "conv", "inputs": [3], "out_channels": 2}),
        r"^node 8 \(conv\) does not lead to the output 7",
    ),
    "non-vector output": (
        lambda d: d.update(output=5) or d["nodes"].pop(),
        r"^output node 5 \(add\) must be a vector of class scores, got shape \[4, 8, 8\]",
    ),
    "two inputs": (
        lambda d: d["nodes"].append({"id": 8, "op": "input", "shape": [1, 8, 8]}),
        r"exactly one input node, found 2",
    ),
    "duplicate id": (
        lambda d: node(d, 3).update(id=2),
        r"^node id 2 is used twice",
    ),
    "output missing": (lambda d: d.update(output=70), r"output node 70 does not exist"),
    "wrong version": (lambda d: d.update(version=2), r"has version 2; this aiperf reads version 1"),
    "wrong format": (lambda d: d.update(format="keras"), r"has format 'keras', expected 'aiperf.arch'"),
    "bad dropout": (
        lambda d: (
            d["nodes"].insert(6, {"id": 8, "op": "dropout", "inputs": [6], "rate": 1.5})
            or node(d, 7).update(inputs=[8])
        ),
        r"^node 8 \(dropout\): dropout rate must be in \[0, 1\), got 1.5",
    ),
}


@pytest.mark.parametrize("case", list(AIPERF_CASES))
def test_bad_aiperf_json_names_the_layer_and_the_problem(case: str) -> None:
    change, message = AIPERF_CASES[case]
    data = mutated(small, change)
    with pytest.raises(ArchError, match=message):
        Graph.from_json(data)
    with pytest.raises(ArchError, match=message):
        Graph.loads(json.dumps(data))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ((DATA / "arch_truncated.json").read_text(), r"^architecture is not valid JSON: "),
        ("", r"^architecture is not valid JSON"),
        (b"\xff\xfe{", r"^architecture is not valid JSON"),
        ("[1, 2]", r"^architecture JSON must be an object, got list"),
        ('{"format": "aiperf.arch", "version": 1, "nodes": []}', r"needs a non-empty list 'nodes'"),
        ('{"format": "aiperf.arch", "version": 1, "nodes": [3]}', r"^nodes\[0\] must be an object, got int"),
        ("[" * 100_000 + "]" * 100_000, r"^architecture is not valid JSON"),
    ],
)
def test_malformed_aiperf_json(text: str | bytes, message: str) -> None:
    with pytest.raises(ArchError, match=message):
        Graph.loads(text)


# -- NNI JSON --------------------------------------------------------------------------------------------------
NNI_CASES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "unknown layer type": (
        lambda d: layer(d, 2).__setitem__(0, "StubLSTM"),
        r"^layer 2 \(StubLSTM\): unknown layer type 'StubLSTM' \(known: ",
    ),
    "conv input channels": (
        lambda d: layer(d, 4).__setitem__(3, 32),
        r"^layer 4 \(StubConv2d\): declares 32 input channels but its input has 16",
    ),
    "conv output shape": (
        lambda d: d["node_list"].__setitem__(5, [5, [16, 16, 64]]),
        r"^layer 4 \(StubConv2d\): node_list declares tensor 5 as \[64, 16, 16\] \(C, H, W\) but the layer gives "
        r"\[32, 16, 16\]",
    ),
    "concat declared channels": (
        lambda d: d["node_list"].__setitem__(9, [9, [16, 16, 40]]),
        r"^layer 8 \(StubConcatenate\): node_list declares tensor 9 as \[40, 16, 16\]",
    ),
    "batch norm features": (
        lambda d: layer(d, 1).__setitem__(3, 8),
        r"^layer 1 \(StubBatchNormalization2d\): declares 8 features but its input has 16",
    ),
    "dense input units": (
        lambda d: layer(d, 14).__setitem__(3, 1024),
        r"^layer 14 \(StubDense\): declares 1024 input units but its input has shape \[2048\]",
    ),
    "missing parameters": (
        lambda d: layer(d, 0).__delitem__(slice(4, None)),
        r"^layer 0 \(StubConv2d\): expected parameters \[input_channels, filters, kernel_size, stride\]",
    ),
    "dangling edge": (
        lambda d: layer(d, 2).__setitem__(1, 77),
        r"^layer 2 \(StubReLU\): tensor 77 is not in node_list \(dangling edge\)",
    ),
    "tensor produced twice": (
        lambda d: layer(d, 3).__setitem__(2, 3),
        r"^layer 3 \(StubDropout2d\): tensor 3 is already produced by layer 2",
    ),
    "cycle": (
        lambda d: layer(d, 2).__setitem__(1, 4),
        r"^NNI graph has a cycle: layer \d+ \(\w+\) -> .*layer 3 \(StubDropout2d\)",
    ),
    "unreachable layer": (
        lambda d: (
            d["node_list"].append([20, [32, 32, 8]])
            or d["layer_list"].append([19, ["StubConv2d", 3, 20, 16, 8, 1, 1, 0]])
        ),
        r"exactly one output tensor, found 2: tensor 18 of layer 17 \(StubDense\), "
        r"tensor 20 of layer 19 \(StubConv2d\)",
    ),
    "non-vector output": (
        lambda d: (
            d["node_list"].__setitem__(19, [19, [1, 1, 10]])
            or d.update(layer_list=[e for e in d["layer_list"] if e[0] < 13])
            or d.update(node_list=[e for e in d["node_list"] if e[0] <= 13])
        ),
        r"^output node 13 \(maxpool\) must be a vector of class scores, got shape \[32, 8, 8\]",
    ),
    "bad node shape": (
        lambda d: d["node_list"].__setitem__(2, [2, [32, 32]]),
        r"^node_list\[2\] \(tensor 2\): shape must be \[H, W, C\] or \[F\], got \[32, 32\]",
    ),
    "bad layer entry": (
        lambda d: d["layer_list"].__setitem__(4, [4, "conv"]),
        r"^layer_list\[4\] must be \[layer_id, \[type, input\(s\), output, \.\.\.\]\]",
    ),
    "no node list": (lambda d: d.pop("node_list"), r"needs a list 'node_list'"),
}


@pytest.mark.parametrize("case", list(NNI_CASES))
def test_bad_nni_json_names_the_layer_and_the_problem(case: str) -> None:
    change, message = NNI_CASES[case]
    data = mutated(nni, change)
    with pytest.raises(ArchError, match=message):
        from_nni_json(data)
    with pytest.raises(ArchError, match=message):
        load_nni(json.dumps(data))


def test_nni_fixture_with_wrong_channels() -> None:
    with pytest.raises(ArchError, match=r"^layer 3 \(StubConv2d\): declares 32 input channels but its input has 16$"):
        load_nni((DATA / "nni_bad_channels.json").read_text())


def test_malformed_nni_json() -> None:
    with pytest.raises(ArchError, match=r"^NNI graph is not valid JSON: "):
        load_nni((DATA / "nni_branches.json").read_text()[:-40])
    with pytest.raises(ArchError, match=r"^NNI graph JSON must be an object, got str"):
        load_nni('"layer_list"')


# -- size ceilings ---------------------------------------------------------------------------------------------
def huge_json(channels: int = 1_000_000) -> dict[str, Any]:
    """1x1 convs 10^6 -> 10^6 channels: 10^12 parameters in the second conv, yet tiny as JSON."""
    data = small()
    node(data, 1).update(out_channels=channels, kernel_size=1, padding=0, out_shape=[channels, 8, 8])
    node(data, 2)["out_shape"] = [channels, 8, 8]
    node(data, 3)["out_shape"] = [channels, 8, 8]
    node(data, 4).update(out_channels=channels, kernel_size=1, padding=0, out_shape=[channels, 8, 8])
    node(data, 5)["out_shape"] = [channels, 8, 8]
    node(data, 6)["out_shape"] = [channels]
    return data


def test_a_huge_graph_costs_nothing_to_describe() -> None:
    graph = Graph.from_json(huge_json())
    assert graph.num_params() > 10**12
    assert flops.forward_flops(graph) > 10**14


def test_parameter_and_flop_ceilings_name_the_layer() -> None:
    data = huge_json()
    with pytest.raises(
        ArchError, match=r"^graph has over 100,000,000 parameters \(reached [\d,]+ at node 4 \(conv\)\)"
    ):
        Graph.from_json(data, ArchLimits(max_params=10**8))
    with pytest.raises(
        ArchError, match=r"^graph needs over 1,000,000,000 forward FLOPs per image \(reached [\d,]+ at "
    ):
        Graph.from_json(data, ArchLimits(max_forward_flops=10**9))
    graph = Graph.from_json(data)
    with pytest.raises(ArchError, match=r"parameters \(reached [\d,]+ at node 4 \(conv\)\)"):
        build_module(graph, ArchLimits(max_params=10**8))
    with pytest.raises(ArchError, match=r"^graph has 8 layers, over the ceiling of 7$"):
        Graph.from_json(small(), ArchLimits(max_nodes=7))
    many = {"format": "aiperf.arch", "version": 1, "nodes": [{"id": i} for i in range(20_001)], "output": 0}
    with pytest.raises(ArchError, match=r"^graph has 20001 layers, over the ceiling of 10000$"):
        Graph.from_json(many)  # refused before a single node is read
    exported = {"node_list": [], "layer_list": [[i, ["StubReLU", i, i + 1]] for i in range(20_000)]}
    with pytest.raises(ArchError, match=r"over the ceiling of 10000"):
        from_nni_json(exported)


def test_morphs_refuse_to_cross_a_ceiling() -> None:
    graph = seed("resnet-tiny", (1, 8, 8), 10, width=8)
    limits = ArchLimits(max_params=graph.num_params() + 10)
    with pytest.raises(ArchError, match=r"parameters \(reached"):
        widen(graph, 1, 8, limits)
    with pytest.raises(ArchError, match=r"^no morph of \['widen'\] applies within the limits \(graph has over"):
        random_morph(graph, random.Random(0), ops=("widen",), limits=limits)


def test_a_trillion_parameter_graph_is_refused_before_torch_is_touched(tmp_path: Path) -> None:
    """In a fresh interpreter: refused by build_module with a ceiling, no torch import, no memory growth."""
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(huge_json()))
    code = f"""
import json, resource, sys, time
from aiperf.arch import ArchLimits, Graph, build_module
from aiperf.errors import ArchError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.monotonic()
graph = Graph.loads(open({str(path)!r}).read())
try:
    build_module(graph, ArchLimits(max_params=10**9))
except ArchError as exc:
    message = str(exc)
else:
    raise SystemExit("not refused")
print(json.dumps({{
    "message": message,
    "torch": "torch" in sys.modules,
    "grown_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
    "seconds": time.monotonic() - start,
    "params": graph.num_params(),
}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["params"] >= 10**12
    assert "over 1,000,000,000 parameters" in result["message"] and "node 4 (conv)" in result["message"]
    assert result["torch"] is False
    assert result["grown_kib"] < 50 * 1024  # 10^12 float32 weights would be 4 TB
    assert result["seconds"] < 30  # generous: a hang guard, not a speed test (it takes milliseconds)


# -- command line ----------------------------------------------------------------------------------------------
def aiperf_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("aiperf", path=str(Path(sys.executable).parent))
    argv = [exe] if exe else [sys.executable, "-m", "aiperf.cli"]
    return subprocess.run([*argv, *args], check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_cli_prints_a_summary_of_a_seed() -> None:
    out = aiperf_cli("arch", "resnet50")
    assert out.returncode == 0, out.stderr
    assert "layers            175" in out.stdout
    assert "parameters        25,557,032" in out.stdout
    assert "forward FLOPs     8,178,368,512 per image (4.089 GMACs)" in out.stdout
    assert f"hash              {seed('resnet50').content_hash()}" in out.stdout


def test_cli_reads_aiperf_and_nni_files() -> None:
    out = aiperf_cli("arch", str(DATA / "nni_aiperf_stem.json"))
    assert out.returncode == 0, out.stderr
    assert "parameters        342,248" in out.stdout
    out = aiperf_cli("arch", str(DATA / "arch_small.json"), "--json")
    assert out.returncode == 0, out.stderr
    assert Graph.loads(out.stdout) == Graph.loads((DATA / "arch_small.json").read_text())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("arch_cycle.json", "aiperf: error: graph has a cycle: node 3 (relu) -> node 4 (conv) -> node 2 (add)"),
        ("arch_truncated.json", "aiperf: error: architecture is not valid JSON: "),
        ("nni_bad_channels.json", "aiperf: error: layer 3 (StubConv2d): declares 32 input channels but its input"),
        ("no_such_file.json", "aiperf: error: cannot read architecture file "),
    ],
)
def test_cli_reports_a_bad_file_in_one_line_and_exits_2(name: str, message: str) -> None:
    out = aiperf_cli("arch", str(DATA / name))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(message)


def test_every_arch_error_is_an_aiperf_error() -> None:
    assert issubclass(ArchError, AiperfError)


@pytest.mark.parametrize("brk", ["\n", "\r", "\u2028", "\x85"])
def test_a_line_break_quoted_from_the_input_stays_escaped_in_one_line(brk: str, tmp_path: Path) -> None:
    data = small()
    data["nodes"][0]["op"] = f"{brk}put"  # the fuzzer's find: the layer name is quoted twice in the message
    with pytest.raises(ArchError) as caught:
        Graph.from_json(data)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert repr(brk)[1:-1] + "put" in message  # shown as its escape, not dropped
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(data))
    out = aiperf_cli("arch", str(path))
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr
