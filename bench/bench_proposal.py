"""Proposal latency against history size, on one core; NNI 3.0's NetworkMorphismTuner side by side if importable.

Usage:  python bench/bench_proposal.py [--sizes 10 100 1000] [--repeats 5] [--dataset digits]

For each size N a synthetic history is generated (N finished trials over distinct real graphs grown by the morph
operators, with epoch events, plus a few running trials), replayed, and then:

* cold: a fresh Searcher proposes (it builds its features, distances and TPE study from scratch: a restarted
  worker);
* warm: the same Searcher proposes again after each of ``--repeats`` new results (a worker in a long run);

Replay throughput (events/s) of the history is printed too. Target: warm <= 1 s per proposal at 1,000 finished
trials. Torch, numpy and BLAS are pinned to one thread before anything is imported.

NNI 3.0 (archived; needs numpy < 2.3 and torch) is measured side by side when this interpreter has it or when
``--nni-python`` names one that does, e.g. a throw-away venv:
``python -m venv /tmp/nni && /tmp/nni/bin/pip install nni==3.0 "numpy<2.3" "setuptools<81" torch==2.13.0``.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

from sim_search import surrogate_reward, synthetic_events  # noqa: E402

from aiperf.search import Searcher, SearchState, load_dataset_spec  # noqa: E402


def _pin_torch() -> None:
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


def bench_size(dataset: str, size: int, repeats: int) -> dict[str, float]:
    spec = load_dataset_spec(dataset)
    t = time.perf_counter()
    events = list(synthetic_events(spec, finished=size, running=4, seed=size))
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    history = SearchState.from_events(events)
    replay_s = time.perf_counter() - t
    searcher = Searcher(spec, seed=1)
    t = time.perf_counter()
    p = searcher.propose(history, "bench-cold")
    cold = time.perf_counter() - t
    warm = []
    for i in range(repeats):
        history.apply(p.to_event())
        history.apply(
            {"type": "trial_end", "trial": p.trial_id, "status": "finished", "reward": surrogate_reward(p.graph)}
        )
        t = time.perf_counter()
        p = searcher.propose(history, f"bench-warm-{i}")
        warm.append(time.perf_counter() - t)
    return {
        "events": len(events),
        "generate_s": gen_s,
        "replay_events_per_s": len(events) / replay_s,
        "cold_s": cold,
        "warm_median_s": statistics.median(warm),
        "warm_max_s": max(warm),
        "method": p.method,  # type: ignore[dict-item]
    }


def _many_events(template: list[dict[str, Any]], total: int) -> Iterator[dict[str, Any]]:
    """``total`` events: the template experiment's trials repeated under new ids (and new sequence numbers)."""
    n = 0
    copy = 0
    while True:
        for event in template:
            if n >= total:
                return
            out = dict(event)
            if "trial" in out:
                out["trial"] = f"{out['trial']}.{copy}"
            out["seq"] = n
            n += 1
            yield out
        copy += 1


def bench_replay(dataset: str, total: int) -> None:
    """Replay rate of a long history (what the master and every worker do on start-up)."""
    spec = load_dataset_spec(dataset)
    template = list(synthetic_events(spec, finished=40, running=0, failed=2, seed=7))
    t = time.perf_counter()
    for _ in _many_events(template, total):
        pass
    generate = time.perf_counter() - t
    history = SearchState()
    t = time.perf_counter()
    history.extend(_many_events(template, total))
    elapsed = time.perf_counter() - t - generate
    print(
        f"replay of {total:,} events ({len(history):,} trials): {elapsed:.2f} s, {total / elapsed:,.0f} events/s "
        f"(event generation, {generate:.2f} s, excluded); skipped {sum(history.skipped.values())}"
    )


# Runs inside the NNI interpreter (NNI 3.0 needs numpy < 2.3 and torch; keep it out of the project's venv).
_NNI_CHILD = """
import json, logging, os, random, statistics, sys, tempfile, time
logging.disable(logging.CRITICAL)
import torch
torch.set_num_threads(1)
from nni.algorithms.hpo.networkmorphism_tuner import NetworkMorphismTuner
sizes = [int(s) for s in sys.argv[1].split(",")]
repeats, width, channels, classes = (int(v) for v in sys.argv[2:6])
budget = float(sys.argv[6])
os.chdir(tempfile.mkdtemp(prefix="nni-bench-"))  # the tuner writes every model's JSON to ./model_path
for size in sizes:
    tuner = NetworkMorphismTuner(task="cv", input_width=width, input_channel=channels, n_output_node=classes,
                                 verbose=False)
    tuner.update_search_space({})
    rng = random.Random(size)
    default_t_min = tuner.bo.t_min
    tuner.bo.t_min = 0.5  # fill the history quickly; the proposals measured below use the default
    t = time.perf_counter()
    filled = 0
    for pid in range(size):
        tuner.generate_parameters(pid)
        tuner.receive_trial_result(pid, None, 0.5 + 0.4 * rng.random())
        filled += 1
    fill = time.perf_counter() - t
    tuner.bo.t_min = default_t_min
    times = []
    start = time.perf_counter()
    for i in range(repeats):
        t = time.perf_counter()
        tuner.generate_parameters(10**6 + i)
        times.append(time.perf_counter() - t)
        tuner.receive_trial_result(10**6 + i, None, 0.5 + 0.4 * rng.random())
        if time.perf_counter() - start > budget:
            break
    print(json.dumps({"size": filled, "median_s": statistics.median(times), "max_s": max(times),
                      "n": len(times), "fill_s": fill}), flush=True)
"""


def _nni_python(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if importlib.util.find_spec("nni") is not None:
        return sys.executable
    return None


def bench_nni(dataset: str, python: str | None, sizes: list[int], repeats: int, budget_s: float) -> None:
    """NNI 3.0's NetworkMorphismTuner with its default annealing (t_min 1e-4), in the interpreter that has it.

    Its history is filled by its own proposals (with a short annealing, for speed) and rewards drawn at random;
    then ``repeats`` proposals are timed (fewer once ``budget_s`` is spent). NNI's input is the dataset's shape.
    """
    if python is None:
        print(
            "NNI 3.0: not importable here (optional extra 'nni', which needs numpy<2.3 and torch); its "
            "NetworkMorphismTuner was skipped. Point --nni-python at an interpreter that has it to compare."
        )
        return
    from aiperf._proc import CommandError, run

    spec = load_dataset_spec(dataset)
    c, h, _ = spec.rules.input_shape
    argv = [
        python,
        "-c",
        _NNI_CHILD,
        ",".join(map(str, sizes)),
        str(repeats),
        str(h),
        str(c),
        str(spec.rules.num_classes),
        str(budget_s),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    print(f"NNI 3.0 NetworkMorphismTuner ({python}; input {h}x{h}x{c}, default t_min 1e-4):")
    try:
        done = run(argv, timeout=budget_s * 3 * len(sizes) + 600, env=env)
    except CommandError as exc:
        print(f"  failed: {exc}")
        return
    for line in done.stdout.splitlines():
        r = json.loads(line)
        print(
            f"  {r['size']:>6} finished  proposal median {r['median_s']:8.3f} s  max {r['max_s']:8.3f} s"
            f"  ({r['n']} timed; filling the history took {r['fill_s']:.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--replay-events", type=int, default=1_000_000)
    parser.add_argument("--skip-nni", action="store_true")
    parser.add_argument("--nni-python", help="an interpreter with nni==3.0 (default: this one, if it has nni)")
    parser.add_argument("--nni-sizes", type=int, nargs="+", default=[10], help="history sizes for NNI (it is slow)")
    parser.add_argument("--nni-repeats", type=int, default=3)
    parser.add_argument("--nni-budget", type=float, default=300.0, help="seconds of NNI proposals per size")
    args = parser.parse_args()
    _pin_torch()
    print(f"proposal latency on one core ({args.dataset}; warm = median of {args.repeats} proposals)")
    print(f"{'finished':>9} {'events':>8} {'replay ev/s':>12} {'cold s':>8} {'warm s':>8} {'warm max s':>10}  method")
    results = {}
    for size in args.sizes:
        r = bench_size(args.dataset, size, args.repeats)
        results[size] = r
        print(
            f"{size:>9} {r['events']:>8} {r['replay_events_per_s']:>12,.0f} {r['cold_s']:>8.3f} "
            f"{r['warm_median_s']:>8.3f} {r['warm_max_s']:>10.3f}  {r['method']}"
        )
    biggest = max(args.sizes)
    verdict = "meets" if results[biggest]["warm_median_s"] <= 1.0 else "MISSES"
    print(
        f"target <= 1 s per proposal at {biggest} finished trials: {verdict} "
        f"(warm {results[biggest]['warm_median_s']:.3f} s, cold {results[biggest]['cold_s']:.3f} s)"
    )
    if args.replay_events:
        bench_replay(args.dataset, args.replay_events)
    if not args.skip_nni:
        bench_nni(args.dataset, _nni_python(args.nni_python), args.nni_sizes, args.nni_repeats, args.nni_budget)


if __name__ == "__main__":
    main()
