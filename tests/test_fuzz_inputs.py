"""Hostile input: the config loader and the architecture importers are fuzzed with hypothesis.

Whatever they are given -- arbitrary JSON, deep nesting, huge numbers, wrong types, valid documents with a few
fields broken -- they either return a usable object or raise a one-line :class:`aiperf.errors.AiperfError`; never
another exception from deep inside, never a hang. Absurd architectures (10^9 channels, 10^6 layers, a
10^5 x 10^5 input) are refused before memory is allocated: measured in a fresh process by its peak RSS.
Identifiers that become path components (experiment, worker, trial ids) are checked against path traversal.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiperf.arch import ArchLimits, Graph, from_nni_json, load_nni, resnet, to_nni_json
from aiperf.config import Config, load_config
from aiperf.errors import AiperfError, ConfigError
from aiperf.paths import ExperimentPaths, check_id

DATA = Path(__file__).parent / "data" / "arch"
T = TypeVar("T")

# Random inputs each run (a new run may find what earlier ones missed), except in CI (.ci/run sets
# AIPERF_FUZZ_DERANDOMIZE=1), where a fixed sequence keeps a landing from hanging on the luck of the draw;
# AIPERF_FUZZ_EXAMPLES raises the count for a long hunt.
FUZZ = settings(
    max_examples=int(os.environ.get("AIPERF_FUZZ_EXAMPLES", "250")),
    derandomize=os.environ.get("AIPERF_FUZZ_DERANDOMIZE") == "1",
    deadline=None,  # the machine is shared and noisy; hangs are caught by _bounded instead
    database=None,  # nothing written into the checkout
    print_blob=True,  # a failure prints the decorator that replays it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class Hang(BaseException):
    """Raised by the alarm in :func:`_bounded` (a BaseException so no ``except Exception`` swallows it)."""


@contextmanager
def _bounded(seconds: float = 20.0) -> Iterator[None]:
    """Fail a call that runs for longer than ``seconds``: a loop driven by an input number is a bug.

    Nests, and leaves an outer alarm (pytest-timeout's, or an enclosing ``_bounded``) running with its time left.
    """

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"no answer after {seconds} s")

    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    previous = signal.signal(
        signal.SIGALRM, alarm if not outer or seconds < outer else signal.getsignal(signal.SIGALRM)
    )
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer) if outer else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


def _clean(call: Callable[[], T]) -> T | None:
    """Run ``call``: its result, or None after a clean one-line AiperfError. Anything else propagates (a bug)."""
    with _bounded():
        try:
            return call()
        except AiperfError as exc:
            message = str(exc)
            assert message.strip(), f"{type(exc).__name__} without a message"
            assert "\n" not in message, f"{type(exc).__name__} message is not one line: {message!r}"
            return None


# -- strategies ------------------------------------------------------------------------------------------------------

HUGE_INTS = st.sampled_from(
    [0, -1, 1, 2, 3, 2**31, 2**53 + 1, 2**63, 2**64, 10**9, 10**18, 10**100, 10**400, -(10**18), -(10**400)]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "conv", "relu", "input", "StubConv2d", "StubSoftmax", "StubAdd", "../x", "a\nb", "\x00"]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in a JSON document, the root included."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out.extend(_paths(value, (*prefix, index)))
    return out


def _mutate(doc: Any, data: st.DataObject, rounds: int) -> Any:
    """A copy of ``doc`` with ``rounds`` random edits: replace, delete, insert, duplicate, scale a number."""
    doc = copy.deepcopy(doc)
    for _ in range(rounds):
        path = data.draw(st.sampled_from(_paths(doc)))
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "insert", "duplicate", "scale"]))
        if not path:
            if action == "replace":
                doc = data.draw(JSON_VALUES)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        key = path[-1]
        value = parent[key]
        if action == "replace":
            parent[key] = data.draw(JSON_VALUES)
        elif action == "delete":
            del parent[key]
        elif action == "insert" and isinstance(value, list):
            value.insert(data.draw(st.integers(0, len(value))), data.draw(JSON_VALUES))
        elif action == "insert" and isinstance(value, dict):
            value[data.draw(st.text(max_size=12))] = data.draw(JSON_VALUES)
        elif action == "duplicate" and isinstance(value, list) and value:
            value.append(copy.deepcopy(value[data.draw(st.integers(0, len(value) - 1))]))
        elif action == "scale" and isinstance(value, int | float) and not isinstance(value, bool):
            parent[key] = value * data.draw(st.sampled_from([-1, 0, 10**9, 10**30, 2**64]))
    return doc


def _seed_graph() -> Graph:
    return resnet((3, 16, 16), 10, blocks=(1, 1), width=4)


AIPERF_DOCS = [_seed_graph().to_json(), _seed_graph().canonical().to_json()]
NNI_DOCS = [json.loads(p.read_text()) for p in sorted(DATA.glob("nni_*.json"))] + [to_nni_json(_seed_graph())]


def _exercise(graph: Graph | None) -> None:
    """What the rest of aiperf does with an accepted graph must not fail deep inside either."""
    if graph is None:
        return
    from aiperf import flops

    with _bounded():
        graph.num_params()
        graph.content_hash()
        flops.forward_flops(graph)
        again = Graph.from_json(json.loads(graph.dumps()), limits=None)
        assert again == graph


# -- architecture importers ------------------------------------------------------------------------------------------


@FUZZ
@given(doc=JSON_VALUES)
def test_arch_importers_take_arbitrary_json(doc: Any) -> None:
    _exercise(_clean(lambda: Graph.from_json(doc)))
    _exercise(_clean(lambda: from_nni_json(doc)))
    text = json.dumps(doc)
    _exercise(_clean(lambda: Graph.loads(text)))
    _exercise(_clean(lambda: load_nni(text)))


@FUZZ
@given(data=st.data(), which=st.integers(0, len(AIPERF_DOCS) - 1), rounds=st.integers(1, 4))
def test_aiperf_graph_json_with_broken_fields(data: st.DataObject, which: int, rounds: int) -> None:
    doc = _mutate(AIPERF_DOCS[which], data, rounds)
    _exercise(_clean(lambda: Graph.from_json(doc)))
    _exercise(_clean(lambda: Graph.loads(json.dumps(doc))))


@FUZZ
@given(data=st.data(), which=st.integers(0, len(NNI_DOCS) - 1), rounds=st.integers(1, 4))
def test_nni_graph_json_with_broken_fields(data: st.DataObject, which: int, rounds: int) -> None:
    doc = _mutate(NNI_DOCS[which], data, rounds)
    _exercise(_clean(lambda: from_nni_json(doc)))
    _exercise(_clean(lambda: load_nni(json.dumps(doc))))


@FUZZ
@given(data=st.data(), which=st.integers(0, len(AIPERF_DOCS) + len(NNI_DOCS) - 1))
def test_arch_text_with_flipped_bytes(data: st.DataObject, which: int) -> None:
    docs = AIPERF_DOCS + NNI_DOCS
    raw = bytearray(json.dumps(docs[which]).encode())
    for _ in range(data.draw(st.integers(1, 8))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.sampled_from(b'0123456789-+.eE"[]{},:\\ \xff\x00'))
    _exercise(_clean(lambda: Graph.loads(bytes(raw))))
    _exercise(_clean(lambda: load_nni(bytes(raw))))


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_arch_importers_take_deep_nesting(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    for text in (nested, f'{{"format":"aiperf.arch","version":1,"nodes":{nested},"output":0}}'):
        assert _clean(lambda text=text: Graph.loads(text)) is None
        assert _clean(lambda text=text: load_nni(text)) is None
    deep: Any = []
    for _ in range(depth):
        deep = [deep]
    assert (
        _clean(lambda: Graph.from_json({"format": "aiperf.arch", "version": 1, "nodes": [deep], "output": 0})) is None
    )


def test_nni_import_of_a_deeply_nested_python_object() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert _clean(lambda: from_nni_json({"node_list": [deep], "layer_list": []})) is None


# Extreme values put into every field of the fixtures, one at a time: a systematic sweep beside the random search.
EXTREMES: list[Any] = [
    0,
    -1,
    2,
    10**9,
    10**18,
    10**400,
    0.5,
    1e308,
    math.nan,
    math.inf,
    "x",
    "",
    None,
    True,
    [],
    [[]],
    {},
]


def _nni_positions(doc: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    for li, (_, desc) in enumerate(doc["layer_list"]):
        for pi in range(1, len(desc)):
            yield ("layer_list", li, 1, pi)
        yield ("layer_list", li, 0)
    for ni, (_, shape) in enumerate(doc["node_list"]):
        yield ("node_list", ni, 0)
        for k in range(len(shape)):
            yield ("node_list", ni, 1, k)


def _aiperf_positions(doc: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    for key in ("format", "version", "output", "history", "nodes"):
        yield (key,)
    for ni, node in enumerate(doc["nodes"]):
        for key in node:
            yield ("nodes", ni, key)
        for key in ("inputs", "extra"):
            yield ("nodes", ni, key)
        for k in range(len(node.get("inputs", []))):
            yield ("nodes", ni, "inputs", k)


def _put(doc: Any, position: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for step in position[:-1]:
        target = target[step]
    target[position[-1]] = value
    return doc


def _sweep(docs: list[Any], positions: Callable[[Any], Iterator[tuple[Any, ...]]], load: Callable[[Any], Any]) -> None:
    failures = []
    for doc in docs:
        for position in positions(doc):
            for value in EXTREMES:
                broken = _put(doc, position, value)
                try:
                    with _bounded(5.0):
                        try:
                            _exercise(load(broken))
                        except AiperfError as exc:
                            assert "\n" not in str(exc), str(exc)
                except (Exception, Hang) as exc:
                    failures.append(f"{position} = {str(value)[:20]}: {type(exc).__name__}: {str(exc)[:120]}")
    assert failures == [], f"{len(failures)} unclean results:\n" + "\n".join(failures[:30])


def test_nni_import_with_every_field_set_to_extremes() -> None:
    _sweep(NNI_DOCS[:-1], _nni_positions, from_nni_json)  # the fixture files (the last is the exported seed)


def test_aiperf_import_with_every_field_set_to_extremes() -> None:
    _sweep(AIPERF_DOCS[:1], _aiperf_positions, Graph.from_json)


def test_nni_pooling_with_a_huge_kernel_is_refused_quickly() -> None:
    doc = copy.deepcopy(next(d for d in NNI_DOCS if any(desc[0] == "StubPooling2d" for _, desc in d["layer_list"])))
    pooling = next(desc for _, desc in doc["layer_list"] if desc[0] == "StubPooling2d")
    pooling[3] = 10**9
    with _bounded(5.0), pytest.raises(AiperfError):
        from_nni_json(doc)


def test_nni_import_of_a_long_graph_listed_backwards_is_not_quadratic() -> None:
    n = 5000
    node_list = [[i, [8, 8, 3]] for i in range(n + 1)] + [[n + 1, [3]], [n + 2, [10]]]
    layers = [[i, ["StubReLU", i, i + 1]] for i in range(n)]
    layers += [[n, ["StubGlobalPooling2d", n, n + 1]], [n + 1, ["StubDense", n + 1, n + 2, 3, 10]]]
    assert from_nni_json({"node_list": node_list, "layer_list": layers}) is not None  # forwards: fast
    with _bounded(5.0):  # a linear import takes ~0.1 s; the quadratic one ~15 s
        assert from_nni_json({"node_list": node_list, "layer_list": layers[::-1]}) is not None


# -- absurd architectures --------------------------------------------------------------------------------------------

_ABSURD = textwrap.dedent(
    """
    import json, resource, sys, time
    from aiperf.arch import ArchLimits, Graph, build_module, from_nni_json, load_nni
    from aiperf.errors import ArchError

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    case = sys.argv[1]
    limits = ArchLimits(max_nodes=10_000, max_params=100_000_000, max_forward_flops=10**12)
    def conv_net(shape, channels):
        return {"format": "aiperf.arch", "version": 1, "output": 3, "nodes": [
            {"id": 0, "op": "input", "shape": shape},
            {"id": 1, "op": "conv", "inputs": [0], "out_channels": channels, "kernel_size": 3, "padding": 1},
            {"id": 2, "op": "gap", "inputs": [1]},
            {"id": 3, "op": "dense", "inputs": [2], "out_features": 10}]}
    if case == "channels":
        doc, calls = conv_net([3, 32, 32], 10**9), ["loads", "build"]
    elif case == "input":
        doc, calls = conv_net([3, 100_000, 100_000], 64), ["loads", "build"]
    elif case == "layers":
        n = 10**6
        nodes = [{"id": 0, "op": "input", "shape": [3, 8, 8]}]
        nodes += [{"id": i, "op": "relu", "inputs": [i - 1]} for i in range(1, n)]
        nodes += [{"id": n, "op": "gap", "inputs": [n - 1]}]
        doc, calls = {"format": "aiperf.arch", "version": 1, "nodes": nodes, "output": n}, ["from_json"]
    elif case == "nni_layers":
        n = 10**6
        doc = {"node_list": [[i, [8, 8, 3]] for i in range(n + 1)],
               "layer_list": [[i, ["StubReLU", i, i + 1]] for i in range(n)]}
        calls = ["from_nni_json"]
    elif case == "layers_text":
        n = 10**6
        body = ",".join('{"id":%d,"op":"relu","inputs":[%d]}' % (i, i - 1) for i in range(1, n))
        doc = ('{"format":"aiperf.arch","version":1,"output":%d,"nodes":[{"id":0,"op":"input","shape":[3,8,8]},'
               '%s,{"id":%d,"op":"gap","inputs":[%d]}]}' % (n, body, n, n - 1))
        del body
        calls = ["loads_text"]
    text = doc if isinstance(doc, str) else json.dumps(doc)
    before = peak_mib()
    start = time.perf_counter()
    refused = []
    for call in calls:
        try:
            if call == "loads":
                Graph.loads(text, limits)
            elif call == "loads_text":
                Graph.loads(text)
            elif call == "from_json":
                Graph.from_json(doc)
            elif call == "from_nni_json":
                from_nni_json(doc)
            elif call == "build":  # accepted without size limits, then refused by the builder before torch loads
                build_module(Graph.loads(text, ArchLimits(max_nodes=10_000)), limits)
            refused.append(None)
        except ArchError as exc:
            refused.append(str(exc))
    print(json.dumps({"refused": refused, "growth_mib": peak_mib() - before, "seconds": time.perf_counter() - start,
                      "torch_loaded": "torch" in sys.modules}))
    """
)


def _absurd(case: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _ABSURD, case], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("channels", "parameters"),
        ("input", "FLOPs"),
        ("layers", "layers, over the ceiling"),
        ("nni_layers", "layers, over the ceiling"),
    ],
)
def test_absurd_architectures_are_refused_before_allocating(case: str, reason: str) -> None:
    outcome = _absurd(case)
    assert outcome["refused"] and all(r is not None and reason in r for r in outcome["refused"]), outcome
    assert outcome["growth_mib"] < 32, outcome  # refused on arithmetic over shapes, nothing built
    assert not outcome["torch_loaded"], outcome
    assert outcome["seconds"] < 30, outcome  # milliseconds really; a generous bound that still catches a loop


def test_absurd_architecture_text_is_refused_before_parsing() -> None:
    outcome = _absurd("layers_text")
    assert outcome["refused"] == [outcome["refused"][0]] and outcome["refused"][0] is not None
    assert outcome["growth_mib"] < 32, outcome


def test_arch_limits_refuse_at_load_time() -> None:
    limits = ArchLimits(max_nodes=10_000, max_params=100, max_forward_flops=None)
    with pytest.raises(AiperfError, match="parameters"):
        Graph.loads(_seed_graph().dumps(), limits)
    with pytest.raises(AiperfError, match="parameters"):
        load_nni(json.dumps(to_nni_json(_seed_graph())), limits)


# -- config ----------------------------------------------------------------------------------------------------------

SECTIONS = {
    "dataset": ["name", "path", "image_size", "shape", "num_classes", "train_size", "eval_size"],
    "run": [
        "duration",
        "workers",
        "launcher",
        "ranks_per_worker",
        "threads_per_rank",
        "seed",
        "heartbeat",
        "stuck_after",
        "max_restarts",
        "report_margin",
        "experiment_dir",
        "hosts",
    ],
    "train": ["device", "precision", "compile", "channels_last", "data_workers", "backend"],
    "search": ["seed_archs", "max_params", "max_forward_flops"],
}
_TEXT = st.text(min_size=1, max_size=12)
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["digits", "cifar10", "imagenet", "synthetic"]),
    "path": _TEXT,
    "image_size": st.integers(8, 512),
    "shape": st.lists(st.integers(1, 64), min_size=3, max_size=3),
    "num_classes": st.integers(2, 1000),
    "train_size": st.integers(1, 10**6),
    "eval_size": st.integers(1, 10**6),
    "duration": st.sampled_from(["90s", "5m", "2h", "1h30m", 3600, 0.5]),
    "workers": st.integers(1, 64),
    "launcher": st.sampled_from(["local", "slurm", "submitit", "mpi"]),
    "ranks_per_worker": st.integers(1, 8),
    "threads_per_rank": st.integers(0, 8),
    "seed": st.integers(0, 2**32),
    "heartbeat": st.sampled_from(["2s", 1, 0.5]),
    "stuck_after": st.sampled_from(["2m", 60, 600.0]),
    "max_restarts": st.integers(0, 10),
    "report_margin": st.sampled_from(["0s", 5, "1m"]),
    "experiment_dir": _TEXT,
    "hosts": st.lists(st.sampled_from(["n1", "n2:4", "node-3.cluster"]), max_size=3),
    "device": st.sampled_from(["auto", "cpu", "cuda"]),
    "precision": st.sampled_from(["bf16", "fp16", "tf32", "fp32"]),
    "compile": st.booleans(),
    "channels_last": st.sampled_from(["auto", True, False]),
    "data_workers": st.integers(0, 8),
    "backend": st.sampled_from(["ddp", "horovod"]),
    "seed_archs": st.lists(_TEXT, max_size=2),
    "max_params": st.integers(0, 10**9),
    "max_forward_flops": st.integers(0, 10**12),
}

TOML_SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=16),
    st.datetimes(),
    st.dates(),
    st.times(),
)


def _toml_value(value: Any) -> str:
    """TOML source for ``value`` (lists become arrays, dicts inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (lone surrogates make the file invalid: fine)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return value.isoformat()  # datetime, date, time


TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


LIST_KEYS = {"shape", "hosts", "seed_archs"}
DURATION_KEYS = {"duration", "heartbeat", "stuck_after", "report_margin"}
BAD_DURATIONS = st.sampled_from(["", "h", "1e9h", "9" * 400, "5 parsecs", "-1s", 10**400, -1, "1h" * 50])


@st.composite
def _config_tables(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> dict[str, dict[str, Any]]:
    """Sections with known keys holding good values, and a few holding hostile ones (a list of hostile items where
    a list belongs), so that each hostile value gets through to the check that should refuse it."""
    tables: dict[str, dict[str, Any]] = {}
    names = draw(st.lists(st.sampled_from(list(SECTIONS)), min_size=1, max_size=4, unique=True))
    if draw(st.integers(0, 9)) == 0:
        names.append("extra")
    for section in names:
        keys = draw(st.lists(st.sampled_from(SECTIONS.get(section, ["x"])), max_size=6, unique=True))
        if draw(st.integers(0, 9)) == 0:
            keys.append("unknown_key")
        table = {}
        for key in keys:
            if key in GOOD and draw(st.integers(0, 3)) > 0:
                table[key] = draw(GOOD[key])
            elif key in LIST_KEYS and draw(st.booleans()):
                table[key] = draw(st.lists(values, min_size=1, max_size=3))
            elif key in DURATION_KEYS and draw(st.booleans()):
                table[key] = draw(BAD_DURATIONS)
            else:
                table[key] = draw(values)
        tables[section] = table
    return tables


@st.composite
def _one_hostile(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> dict[str, dict[str, Any]]:
    """Every key good except one, so the one hostile value is what the loader must deal with."""
    section = draw(st.sampled_from(list(SECTIONS)))
    key = draw(st.sampled_from(SECTIONS[section]))
    tables: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for other in draw(st.lists(st.sampled_from(SECTIONS[section]), max_size=4, unique=True)):
        tables[section][other] = draw(GOOD[other])
    if key in LIST_KEYS and draw(st.booleans()):
        tables[section][key] = draw(st.lists(values, min_size=1, max_size=3))
    elif key in DURATION_KEYS and draw(st.booleans()):
        tables[section][key] = draw(BAD_DURATIONS)
    else:
        tables[section][key] = draw(values)
    return tables


def _check_usable(config: Config | None) -> None:
    """An accepted config must be savable and reload to itself (the master writes it as config.json)."""
    if config is None:
        return
    saved = json.dumps(config.to_json(), allow_nan=False)
    assert Config.from_json(json.loads(saved)) == config
    assert len(config.digest()) == 64


@FUZZ
@given(tables=_config_tables(TOML_VALUES) | _one_hostile(TOML_VALUES), junk=st.text(max_size=30))
def test_config_loader_takes_hostile_toml(tmp_path_factory: pytest.TempPathFactory, tables: Any, junk: str) -> None:
    lines = []
    for section, table in tables.items():
        lines.append(f"[{section}]")
        lines.extend(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items())
    path = tmp_path_factory.mktemp("toml") / "aiperf.toml"
    for text in ("\n".join(lines), "\n".join(lines) + "\n" + junk, junk):
        path.write_text(text, errors="surrogatepass")
        _check_usable(_clean(lambda: load_config(path)))


@FUZZ
@given(
    tables=_config_tables(JSON_VALUES) | _one_hostile(JSON_VALUES),
    keys=st.lists(
        st.one_of(st.text(max_size=20), st.sampled_from(["run.", ".x", "run.duration.x", "a.b"])), max_size=3
    ),
    values=st.lists(JSON_VALUES, min_size=3, max_size=3),
)
def test_config_overrides_and_saved_config_take_hostile_values(tables: Any, keys: list[str], values: list[Any]) -> None:
    overrides = {f"{section}.{key}": value for section, table in tables.items() for key, value in table.items()}
    overrides.update(zip(keys, values, strict=False))
    _check_usable(_clean(lambda: load_config(None, overrides)))
    _check_usable(_clean(lambda: Config.from_json(tables)))


CONFIG_EXTREMES: list[Any] = [
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1e308,
    math.inf,
    -math.inf,
    math.nan,
    True,
    "",
    "x\u0000y",
    "a\nb",
    "9" * 400,
    [],
    [[]],
    [1, "a"],
    [datetime.datetime(1979, 5, 27, 7, 32)],
    datetime.date(1979, 5, 27),
    datetime.time(7, 32),
    {},
    {"a": 1},
]
OVERRIDE_ONLY: list[Any] = [10**400, -(10**400), None, object(), b"bytes", (1, 2, 3), {1: 2}]


def test_config_with_every_key_set_to_extremes(tmp_path: Path) -> None:
    """Each key in turn gets each extreme value, through a TOML file and as an override: a systematic sweep."""
    path = tmp_path / "aiperf.toml"
    failures = []
    for section, keys in SECTIONS.items():
        for key in keys:
            for value in CONFIG_EXTREMES + OVERRIDE_ONLY:
                attempts: list[Callable[[], Config]] = [
                    lambda section=section, key=key, value=value: load_config(None, {f"{section}.{key}": value})
                ]
                if value in CONFIG_EXTREMES:
                    text = f"[{section}]\n{key} = {_toml_value(value)}\n"
                    attempts.append(lambda text=text: (path.write_text(text), load_config(path))[1])
                for attempt in attempts:
                    try:
                        _check_usable(_clean(attempt))
                    except Exception as exc:
                        failures.append(f"[{section}] {key} = {str(value)[:20]!r}: {type(exc).__name__}: {exc}")
    assert failures == [], f"{len(failures)} unclean results:\n" + "\n".join(failures[:30])


@pytest.mark.parametrize("depth", [50, 5000])
def test_config_loader_takes_deep_nesting(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("[run]\nhosts = " + "[" * depth + "]" * depth + "\n")
    assert _clean(lambda: load_config(path)) is None
    path.write_text("[run]\nhosts = " + "{a = " * depth + "1" + "}" * depth + "\n")
    assert _clean(lambda: load_config(path)) is None


def test_config_file_that_is_not_a_file(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "missing.toml", Path("/dev/null/x"), "bad\0path"):
        assert _clean(lambda path=path: load_config(path)) is None  # type: ignore[misc]
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00[run]")
    assert _clean(lambda: load_config(binary)) is None


# -- identifiers -----------------------------------------------------------------------------------------------------

HOSTILE_IDS = [
    "",
    ".",
    "..",
    "../x",
    "x/../../y",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "..\\x",
    "x\0y",
    "x\n",
    "-rf",
    ".hidden",
    "a..b",
    "w" * 81,
    "w\u2215x",  # a division slash that looks like '/'
    "\uff570",  # full-width letters
]


@pytest.mark.parametrize("value", HOSTILE_IDS)
def test_unsafe_ids_are_refused_everywhere_a_path_is_built(tmp_path: Path, value: str) -> None:
    paths = ExperimentPaths(tmp_path)
    for build in (paths.journal, paths.log, paths.trial_tensorboard, check_id):
        with pytest.raises(ConfigError, match="invalid"):
            build(value)


@FUZZ
@given(value=st.one_of(st.text(max_size=90), st.sampled_from(HOSTILE_IDS), st.from_regex(r"[A-Za-z0-9._-]{1,85}")))
def test_any_id_that_is_accepted_stays_one_component_inside_the_experiment(value: str) -> None:
    root = Path("/experiment")
    paths = ExperimentPaths(root)
    try:
        check_id(value)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    for built, folder in (
        (paths.journal(value), paths.journals),
        (paths.log(value), paths.logs),
        (paths.trial_tensorboard(value), paths.hparams),
    ):
        assert built.parent == folder and built.name.startswith(value)
        assert ".." not in built.parts
        assert value.isascii() and value.isprintable() and value[0].isalnum()


def test_a_worker_refuses_an_unsafe_id_before_touching_the_experiment(tmp_path: Path) -> None:
    from aiperf.worker import run_worker

    for value in ("../../x", "/tmp/x", "a/b"):
        with pytest.raises(ConfigError, match="invalid worker id"):
            run_worker(tmp_path, value)
    assert list(tmp_path.iterdir()) == []
