"""Fast checks of the benchmarks' pure parts (bench/), of the worker's history reader they motivated, and of
bench/gpu.sh without a GPU. The benchmarks themselves run for minutes and print figures; these run in seconds."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from aiperf.history import FeedReader, FeedWriter, JournalSet, JournalWriter, read_journal

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def _bench(name: str) -> ModuleType:
    """Import bench/<name>.py (the benches import each other by file name, so bench/ goes on the path)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _rec(kind: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "time": t, "worker": "w000", **fields}


# -- duty cycle ------------------------------------------------------------------------------------------------------


def _worker_records() -> list[dict[str, Any]]:
    """A worker's journal over a 100 s window: two trials, the second stopped by the deadline, then restarted once."""
    return [
        _rec("worker_start", -1.0),
        _rec("proposal", 0.5, trial="w000-1", proposal_s=0.2, history_s=0.1, epochs=2),  # began at 0.2
        _rec("trial_start", 1.0, trial="w000-1", setup_s=0.4),
        _rec("epoch", 11.0, trial="w000-1", t_start=1.0, t_end=11.0, loader_s=0.5),
        _rec("epoch", 21.0, trial="w000-1", t_start=11.0, t_end=21.0, loader_s=0.0),
        _rec("trial_end", 21.5, trial="w000-1", status="finished", journal_s=0.3),
        _rec("proposal", 22.0, trial="w000-2", proposal_s=0.1, history_s=0.0, wait_s=0.3, epochs=4),
        _rec("trial_start", 22.5, trial="w000-2", setup_s=0.3),
        _rec("epoch", 32.5, trial="w000-2", t_start=22.5, t_end=32.5, loader_s=0.0),
        _rec("heartbeat", 40.0, trial="w000-2"),
        # the worker dies at ~40 s; its successor starts at 45 s and closes the trial as failed
        _rec("worker_start", 45.0),
        _rec("trial_end", 45.1, trial="w000-2", status="failed", journal_s=0.0),
        _rec("proposal", 46.0, trial="w000-3", proposal_s=0.5, history_s=0.5, epochs=2),  # began at 45.0
        _rec("trial_start", 46.0, trial="w000-3", setup_s=0.0),
        _rec("epoch", 96.0, trial="w000-3", t_start=46.0, t_end=96.0, loader_s=0.0),
        _rec("trial_end", 100.2, trial="w000-3", status="stopped", journal_s=0.1),
        _rec("worker_stop", 100.3, journal_s=0.5),
    ]


def test_duty_cycle_partitions_the_window() -> None:
    duty = _bench("bench_duty_cycle")
    w = duty.worker_duty("w000", _worker_records(), t0=0.0, t_end=100.0)
    parts = w.parts
    assert w.window_s == pytest.approx(100.0)
    assert sum(parts.values()) == pytest.approx(100.0)
    # steps: 10 + 10 + 10 + 50 epochs, minus 0.5 s waiting for data, plus the stopped trial's last 4 s
    assert parts["steps"] == pytest.approx(83.5)
    assert parts["data loader start-up"] == pytest.approx(0.5)
    assert parts["proposal"] == pytest.approx(0.8)
    assert parts["history read"] == pytest.approx(0.6)
    assert parts["logical wait"] == pytest.approx(0.3)
    assert parts["trial set-up"] == pytest.approx(0.7)
    assert parts["journaling"] == pytest.approx(0.5)
    # the window's opening (0 -> 0.2), the lost epoch (32.5 -> 40) and the restart (40 -> 45)
    assert parts["start-up and restarts"] == pytest.approx(0.2 + 7.5 + 5.0)
    assert parts["trial wrap-up"] == pytest.approx(0.5 - 0.3 / 4)
    assert w.duty_cycle == pytest.approx(0.835)
    assert w.scored_s == pytest.approx(80.0)
    assert (w.trials, w.epochs, w.starts) == (3, 4, 2)


def test_duty_cycle_reads_real_journals(tmp_path: Path) -> None:
    duty = _bench("bench_duty_cycle")
    journals = tmp_path / "journals"
    with JournalWriter(journals / "master.jsonl", "master") as master:
        master.emit({"type": "experiment_start", "t0": 0.0, "deadline": 100.0, "config": {"run": {"workers": 1}}})
        master.emit({"type": "experiment_end", "t_end": 100.0, "reason": "the window closed"})
    with JournalWriter(journals / "w000.jsonl", "w000") as writer:
        for record in _worker_records():
            writer.emit({k: v for k, v in record.items() if k not in ("time", "worker")})
    report = duty.analyse(tmp_path)
    # the envelope times are now, not the hand-made ones: the window closes at t_end, the epochs still count
    assert [w.worker for w in report.workers] == ["w000"]
    assert report.total().epochs == 4
    text = duty.format_report([("run", report)])
    assert "duty cycle" in text and "steps" in text


def test_duty_cycle_experiment_config_is_a_valid_config(tmp_path: Path) -> None:
    from aiperf.config import load_config

    duty = _bench("bench_duty_cycle")
    path = tmp_path / "c.toml"
    path.write_text(duty.experiment_config("90s", 2, (3, 32, 32), 512, 128, "bf16", 3))
    config = load_config(path)
    assert config.dataset.name == "synthetic" and config.dataset.shape == (3, 32, 32)
    assert config.run.duration_s == 90 and config.dataset.train_size == 512


# -- efficiency ------------------------------------------------------------------------------------------------------


def test_efficiency_figures() -> None:
    eff = _bench("bench_efficiency")
    result = {
        "score": {"score_flops": 80e9, "flops": 80e9 * 100},
        "workers": [{"busy_s": 90.0}, {"busy_s": 70.0}],
        "window": {"duration_s": 100.0},
        "efficiency": {"ratio": 0.8},
        "config": {"train": {"precision": "bf16"}},
    }
    fig = eff.run_figures(result, [{"peak_flops": 100e9, "threads": 2}])
    assert fig.precision == "bf16" and fig.recorded_threads == 2 and fig.workers == 2
    assert fig.training_rate == pytest.approx(8e12 / 160.0 * 2)
    text = eff.format_figures(fig, 200e9, "2 processes x 1 thread")
    assert "efficiency 80.0%" in text and "efficiency 40.0%" in text


def _probe(node: str, phase: str, peak: float) -> dict[str, Any]:
    """A master's probe record as aiperf/master.py writes it (the probe's fields, then ``phase``)."""
    return {"type": "probe", "node": node, "device": "cpu", "precision": "bf16", "peak_flops": peak, "threads": 2,
            "phase": phase}  # fmt: skip


def _efficiency_experiment(root: Path, probes: list[dict[str, Any]]) -> Path:
    """A finished experiment's result.json and master journal, the two files bench_efficiency reads."""
    import json

    result = {
        "score": {"score_flops": 80e9, "flops": 80e9 * 100},
        "workers": [{"busy_s": 90.0}, {"busy_s": 90.0}],
        "window": {"duration_s": 100.0},
        "efficiency": {"ratio": None},
        "config": {"train": {"precision": "bf16"}},
    }
    (root / "result.json").write_text(json.dumps(result))
    with JournalWriter(root / "journals" / "master.jsonl", "master") as master:
        master.emit({"type": "experiment_start", "t0": 0.0, "deadline": 100.0, "config": {"run": {"workers": 2}}})
        for probe in probes[: len(probes) // 2]:
            master.emit(probe)
        master.emit({"type": "experiment_end", "t_end": 100.0, "reason": "the window closed"})
        for probe in probes[len(probes) // 2 :]:
            master.emit(probe)
    return root


def test_efficiency_counts_each_nodes_best_probe_not_the_sum_of_its_readings(tmp_path: Path) -> None:
    eff = _bench("bench_efficiency")
    # the master probes every node before the window and again after it: n0 read low before (a loaded moment)
    probes = [_probe("n0", "before", 100e9), _probe("n1", "before", 60e9)]
    probes += [_probe("n0", "after", 140e9), _probe("n1", "after", 40e9)]
    fig = eff.read_run(_efficiency_experiment(tmp_path, probes))
    assert fig.recorded_peak == pytest.approx(140e9 + 60e9)  # not 340e9, the four readings summed
    text = eff.format_figures(fig, None, "")
    assert "200.0 GFLOP/s" in text and "efficiency 40.0%" in text


def test_efficiency_without_a_probe_says_so(tmp_path: Path) -> None:
    eff = _bench("bench_efficiency")
    fig = eff.read_run(_efficiency_experiment(tmp_path, []))
    assert fig.recorded_peak == 0.0
    text = eff.format_figures(fig, None, "")
    assert "no efficiency" in text and "score 80.0 GFLOPS" in text


# -- history at scale ------------------------------------------------------------------------------------------------


def test_fast_writer_writes_what_the_journal_writer_writes(tmp_path: Path) -> None:
    hist = _bench("bench_history_scale")
    template = [e for trial in hist.trial_template(trials=2) for e in trial]
    assert hist.check_identical(tmp_path, template)


def test_replay_readers_agree_on_a_written_experiment(tmp_path: Path) -> None:
    hist = _bench("bench_history_scale")
    facts = hist.write_experiment(tmp_path, 600, workers=4)
    assert facts["events"] == 600 and facts["journals"] == 5
    history = hist.child("history", tmp_path)
    startup = hist.child("startup", tmp_path)
    analysed = hist.child("analyze", tmp_path)
    assert history["records"] == 600 + 4 + 3  # worker_start per worker, the master's three records
    assert history["trials"] == startup["trials"] == analysed["trials"] > 0
    costs = hist.parse_costs(tmp_path)
    assert costs["read_per_record_s"] > 0 and costs["bytes_per_record"] > 100


def test_poll_costs_are_measured() -> None:
    hist = _bench("bench_history_scale")
    p = hist.poll_costs(30, records_per_file=2, repeats=2)
    assert p["files"] == 30
    assert all(p[k] > 0 for k in ("poll_idle_s", "poll_1pct_s", "open_scan_s", "stat_scan_s", "listing_s"))


# -- the simulation --------------------------------------------------------------------------------------------------


def test_trial_shapes_from_records() -> None:
    sim = _bench("sim_master")
    records = [
        {"type": "proposal", "trial": "a", "epochs": 4},
        {"type": "epoch", "trial": "a", "t_start": 0.0, "t_end": 10.0},
        {"type": "epoch", "trial": "a", "t_start": 10.0, "t_end": 30.0},
        {"type": "trial_end", "trial": "a", "status": "finished"},
        {"type": "proposal", "trial": "b", "epochs": 2},
        {"type": "epoch", "trial": "b", "t_start": 30.0, "t_end": 40.0},
        {"type": "trial_end", "trial": "b", "status": "stopped"},
    ]
    spread, completion = sim.trial_shapes(records)
    assert spread == [1.0, 2.0, 1.0]
    assert completion == [0.5]


def test_proposal_latency_curve_is_interpolated_and_held_flat() -> None:
    sim = _bench("sim_master")
    model = sim.CostModel(sim.DEFAULT_COSTS, sim.FileSystem("local"))
    points = {p["finished"]: p["warm_s"] for p in sim.DEFAULT_COSTS["proposal"]}
    lo, hi = min(points), max(points)
    assert model.propose_s(lo) == pytest.approx(points[lo])
    assert model.propose_s(hi) == pytest.approx(points[hi])
    assert model.propose_s(hi * 100) == pytest.approx(points[hi])
    assert points[lo] <= model.propose_s(int(math.sqrt(lo * hi))) <= points[hi]


def test_simulation_keeps_the_read_off_the_dispatch_path_and_the_feed_unloads_the_server() -> None:
    sim = _bench("sim_master")
    workload = sim.Workload(workers=300, hours=0.3, epoch_s=20.0, rounds=(2, 3))
    nfs = sim.FileSystem("nfs", 2e-4, 1e5, 2e-3)
    out = {name: sim.run(workload, sim.VARIANTS[name], sim.DEFAULT_COSTS, nfs) for name in sim.VARIANTS}
    before, journals, now = out["before"], out["journals"], out["now"]
    assert all(o.trials > 300 for o in out.values())
    # before: every dispatch reads everything since the worker's previous one; since: a background thread does
    assert before.lag_parts["read"] > 10 * journals.lag_parts["read"]
    assert before.pct(before.lags, 0.5) > journals.pct(journals.lags, 0.5)
    assert journals.records_per_s > out["journals+hb30"].records_per_s  # 2 s heartbeats against 30 s
    # the workers' background reads of every journal load the server; the one feed file does not
    assert now.ops_per_s < journals.ops_per_s / 5
    assert now.pct(now.master_polls, 0.99) < journals.pct(journals.master_polls, 0.99)
    # TensorBoard: one event file per trial now, one per epoch record with the monitor before 963ac3b
    assert journals.files_per_hour < before.files_per_hour / 2
    assert journals.files_per_hour == pytest.approx(now.files_per_hour, rel=0.2)
    assert "keeps up" in sim.format_outcomes(list(out.values()))


# -- the worker's history reader -------------------------------------------------------------------------------------


def _proposal(trial: str) -> dict[str, Any]:
    from aiperf.arch import seed

    graph = seed("resnet-tiny", (1, 8, 8), 10)
    return {
        "type": "proposal",
        "trial": trial,
        "parent": None,
        "arch": graph.canonical().to_json(),
        "arch_hash": graph.content_hash(),
        "hparams": {},
        "epochs": 2,
    }


def _master_copies(feed: FeedWriter, tail: JournalSet) -> None:
    """What the master does every half second: copy what the workers wrote into the feed."""
    feed.append(tail.poll())


def test_history_reader_reads_the_rest_synchronously_while_reading_is_cheap(tmp_path: Path) -> None:
    from aiperf.search import SearchState
    from aiperf.worker import _HistoryReader

    journals = tmp_path / "journals"
    journals.mkdir()
    feed, tail = FeedWriter(tmp_path / "feed.jsonl"), JournalSet(journals)
    history = SearchState()
    reader = _HistoryReader(FeedReader(tmp_path / "feed.jsonl", skip_writer="w000"), history, min_period_s=3600.0)
    own = JournalWriter(journals / "w000.jsonl", "w000")
    other = JournalWriter(journals / "w001.jsonl", "w001")
    try:
        own.emit(_proposal("w000-0"))  # an earlier incarnation's trial: the replay reads it from the journal
        other.emit(_proposal("w001-0"))
        _master_copies(feed, tail)
        reader.replay(read_journal(journals / "w000.jsonl")[0])
        assert {"w000-0", "w001-0"} <= set(history.trials)
        reader.start()  # its first read is an hour away: whatever arrives now is read by catch_up itself
        other.emit(_proposal("w001-1"))
        reader.own(own.emit(_proposal("w000-1")))
        _master_copies(feed, tail)
        reader.catch_up()
        assert {"w000-0", "w000-1", "w001-0", "w001-1"} <= set(history.trials)
        other.emit({"type": "trial_end", "trial": "w001-1", "status": "finished", "reward": 0.5})
        _master_copies(feed, tail)
        reader.catch_up()
        assert history["w001-1"].reward == 0.5
        assert sum(history.skipped.values()) == 0  # its own records did not come back as duplicates
    finally:
        reader.close()
        own.close()
        other.close()
        feed.close()


def test_a_restarted_worker_replays_the_trials_it_closed_as_failed(tmp_path: Path) -> None:
    from aiperf.search import SearchState, TrialState
    from aiperf.worker import _close_orphaned_trials, _HistoryReader

    path = tmp_path / "w000.jsonl"
    with JournalWriter(path, "w000") as crashed:  # the previous incarnation died during trial w000-1
        crashed.emit(_proposal("w000-0"))
        crashed.emit({"type": "trial_end", "trial": "w000-0", "status": "finished", "reward": 0.5})
        crashed.emit(_proposal("w000-1"))
    with JournalWriter(path, "w000") as journal:
        own, closed = _close_orphaned_trials(journal, read_journal(path)[0])
    assert closed == 1 and own == read_journal(path)[0]  # what it replays is its journal as it now stands
    history = SearchState()
    _HistoryReader(FeedReader(tmp_path / "feed.jsonl", skip_writer="w000"), history).replay(own)
    assert history["w000-1"].state is TrialState.FAILED  # not a running trial (a pending point) forever
    assert history["w000-0"].state is TrialState.FINISHED


def test_history_reader_leaves_slow_reads_to_its_thread(tmp_path: Path) -> None:
    from aiperf.search import SearchState
    from aiperf.worker import _HistoryReader

    journals = tmp_path / "journals"
    journals.mkdir()
    feed, tail = FeedWriter(tmp_path / "feed.jsonl"), JournalSet(journals)
    other = JournalWriter(journals / "w001.jsonl", "w001")
    slow = SearchState()
    idle = _HistoryReader(FeedReader(feed.path, skip_writer="w000"), slow, budget_s=-1.0, min_period_s=3600.0)
    history = SearchState()
    reader = _HistoryReader(FeedReader(feed.path, skip_writer="w000"), history, budget_s=-1.0, min_period_s=0.05)
    try:
        for r in (idle, reader):
            r.replay([])
            r.start()
        other.emit(_proposal("w001-1"))
        _master_copies(feed, tail)
        time.sleep(0.3)
        idle.catch_up()  # every read counts as slow and its thread has not read yet: the proposal is not there
        assert "w001-1" not in slow
        limit = time.time() + 10
        while "w001-1" not in history and time.time() < limit:
            time.sleep(0.05)
            reader.catch_up()  # never reads itself, takes what the thread read
        assert "w001-1" in history
    finally:
        idle.close()
        reader.close()
        other.close()
        feed.close()


# -- weak scaling ----------------------------------------------------------------------------------------------------


def test_search_quality_runs_three_arms_and_reports_each_seeds_winner() -> None:
    quality = _bench("bench_search_quality")
    results = [quality.run_seed(("digits", seed, 4)) for seed in range(2)]
    for rewards, seconds in results:
        assert set(rewards) == {"BO", "control", "random"} and all(len(r) == 4 for r in rewards.values())
        assert set(seconds) == {"BO", "control"}
    lines = quality.report(results, 4)
    assert any(line.startswith("BO beat control on") for line in lines)
    assert sum(1 for line in lines if line.startswith("result: BO")) == 2
    assert len([line for line in lines if line.split()[:1] in (["0"], ["1"])]) == 2  # one line per seed


def test_search_quality_schedule_arms_train_by_rounds_and_compare_the_two_rewards() -> None:
    quality = _bench("bench_search_quality")
    results = [quality.run_schedule_seed(("digits", seed, 6, 2)) for seed in range(2)]
    for finals in results:
        assert set(finals) == {"budget", "horizon"} and all(len(f) == 6 for f in finals.values())
        assert all(0.0 <= v <= 1.0 for f in finals.values() for v in f)
    lines = quality.schedule_report(results, 6, 2)
    assert sum(1 for line in lines if line.startswith("schedule result:")) == 1
    assert any(line.startswith("horizon beat budget on") for line in lines)


def test_the_control_arm_picks_at_random_among_morphs_of_the_best_parents() -> None:
    from sim_search import synthetic_events

    from aiperf.search import BOConfig, Searcher, SearchState, load_dataset_spec

    spec = load_dataset_spec("digits")
    h = SearchState.from_events(synthetic_events(spec, finished=12, seed=3))
    control = Searcher(spec, seed=0, config=BOConfig(acquisition="random"))
    p = control.propose(h, "w000-20")
    best = {r.trial_id for r in sorted(h.with_result(), key=lambda r: -(r.reward or 0.0))[:5]}
    assert p.method == "random" and p.predicted is None and p.parent in best and not h.has_hash(p.arch_hash)
    assert p.details["evaluated"] > 15  # the population and the annealing moves, as for BO


def test_weak_scaling_config_and_ratio(tmp_path: Path) -> None:
    from aiperf.config import load_config

    weak = _bench("bench_weak_scaling")
    path = tmp_path / "weak.toml"
    path.write_text(weak.config_text("120s", 2048, (3, 32, 32), "bf16"))
    config = load_config(path)
    assert config.run.threads_per_rank == 1 and config.dataset.train_size == 2048
    assert weak.scaling({1: 100.0, 2: 190.0}) == {1: 1.0, 2: pytest.approx(0.95)}
    assert weak.scaling({2: 200.0, 4: 380.0})[4] == pytest.approx(0.95)


# -- trainer against a hand-written loop -----------------------------------------------------------------------------


def test_trainer_bench_runs_and_prints_its_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    trainer = _bench("bench_trainer")
    threads = torch.get_num_threads()
    try:  # digits, resnet-tiny: one untimed warm-up and one timed epoch of each loop, a few seconds
        assert trainer.main(["--reps", "1", "--epochs", "1", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    ratios = [line for line in out.splitlines() if "ratio trainer/hand:" in line]
    assert len(ratios) == 2  # wall clock and CPU time
    for line in ratios:
        assert float(line.split("ratio trainer/hand:")[1].split()[0]) > 0


# -- bench/gpu.sh ----------------------------------------------------------------------------------------------------


def test_gpu_script_dry_run_writes_a_valid_experiment(tmp_path: Path) -> None:
    from aiperf.config import load_config
    from aiperf.search import load_dataset_spec

    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(BENCH / "gpu.sh"), "--dry-run"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "4.09 GMACs" in done.stdout  # ResNet-50 at 224x224
    budget = int(done.stdout.split("all steps stop within ")[1].split()[0])
    assert budget < 480  # the script promises under 8 minutes
    table = done.stdout.split("== bench/gpu.sh on ")[1]
    gpu_table = _bench("gpu_table")
    for row in gpu_table.ROWS:  # the dry run prints the whole table, every row "not run"
        assert f"{row}" in table and "not run" in table.split(row)[1].splitlines()[0]
    config = load_config(tmp_path / "experiment.toml")
    assert config.dataset.shape == (3, 224, 224) and config.dataset.num_classes == 1000
    assert config.train.precision == "bf16" and config.train.device == "cuda"
    spec = load_dataset_spec(tmp_path / "space.json")
    assert [s.name for s in spec.seeds] == ["resnet50"]


def test_gpu_script_stops_clearly_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the script would run the benchmark")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(BENCH / "gpu.sh")], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "no CUDA GPU" in done.stderr
    assert not (tmp_path / "experiment").exists()


def test_monitor_bench_counts_runs_and_sessions(tmp_path: Path) -> None:
    bench = _bench("bench_monitor")
    figures = bench.run(trials=20, workers=4, epochs=2, batch=16, root=tmp_path / "exp")
    assert figures["records"] == 1 + 4 + 4 + 20 * (2 + 2 + 1)  # start, probes, worker starts, per-trial records
    assert (figures["tb_runs"], figures["tb_files"]) == (2, 2)
    assert (figures["hp_runs"], figures["hp_files"], figures["sessions"]) == (20, 20, 20)
    assert figures["wall_s"] > 0 and figures["hp_bytes"] > 20 * 100


# -- integrity -------------------------------------------------------------------------------------------------------


def test_integrity_bench_writes_experiments_that_verify(tmp_path: Path) -> None:
    """The bench's two experiments agree with the code (no finding), and a distinct architecture per trial costs
    one recount per trial: the 'distinct' experiment holds as many different architectures as trials."""
    bench = _bench("bench_integrity")
    from aiperf.report import analyze

    for distinct in (False, True):
        paths = bench._experiment(tmp_path / str(distinct), trials=6, epochs=2, distinct=distinct)
        result = analyze(paths)
        assert result.integrity == [] and result.status == "finished"
        hashes = {t.arch_hash for t in result.trials}
        assert len(hashes) == (6 if distinct else 1)


def test_integrity_recounts_in_a_pool_of_processes_with_the_same_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches with many distinct architectures are recounted in a process pool: the findings are the same as in
    the caller's process, a forged count included."""
    from test_integrity import load, rechain

    import aiperf.integrity as integrity
    from aiperf.report import analyze

    bench = _bench("bench_integrity")
    paths = bench._experiment(tmp_path / "exp", trials=8, epochs=1, distinct=True)
    records = load(paths, "w001")
    start = next(r for r in records if r["type"] == "trial_start")
    start["train_flops_per_image"] *= 3
    rechain(paths, "w001", records)
    inline = analyze(paths).integrity
    monkeypatch.setattr(integrity, "POOL_MIN", 2)
    monkeypatch.setattr(integrity, "BATCH_TRIALS", 3)
    pooled = analyze(paths).integrity
    assert any(f.startswith("flops:") and start["trial"] in f for f in inline), inline
    assert sorted(pooled) == sorted(inline)


def test_gpu_extras_world_step_and_the_table_on_a_cpu(tmp_path: Path) -> None:
    """The 1-rank world of gpu_extras.py (gloo on a CPU, NCCL on a GPU) for real, and the table row it feeds."""
    extras, gpu_table = _bench("gpu_extras"), _bench("gpu_table")
    out = tmp_path / "extras.json"
    argv = ["--device", "cpu", "--shape", "3", "8", "8", "--arch", "resnet-tiny", "--batch-size", "4", "--steps", "2"]
    assert extras.main([*argv, "--skip", "precision", "compile", "--allreduce-mb", "1", "--out", str(out)]) == 0
    world = json.loads(out.read_text())["world"]
    assert world["backend"] == "gloo" and world["init_s"] > 0 and world["ddp_images_per_s"] > 0
    rows = dict(gpu_table.rows(tmp_path))
    assert rows["1-rank NCCL world"].startswith("gloo: init")
    assert rows["trainer vs hand-written loop"] == "not run"


# -- reproducibility -------------------------------------------------------------------------------------------------


def _run(repro: ModuleType, name: str, by_class: dict[int, tuple[float, float]], window: float = 100.0) -> Any:
    flops = sum(f for f, _ in by_class.values())
    seconds = sum(s for _, s in by_class.values())
    return repro.RunFigures(
        name, 1, window, flops / window, None, None, 1e9, 10, 5, flops, seconds, 1e6, 10, 5, 5, 0.0,
        by_class=by_class,
    )  # fmt: skip


def test_reproducibility_splits_the_rate_into_workload_and_hardware() -> None:
    repro = _bench("bench_reproducibility")
    small, big = repro.size_class(5e6), repro.size_class(30e6)
    assert small != big and repro.size_class(5e6) == repro.size_class(6e6)
    # same hardware (small nets at 1 GFLOP/s, big ones at 2), different mixes: only W moves
    mix = [
        _run(repro, "a", {small: (80e9, 80.0), big: (40e9, 20.0)}),
        _run(repro, "b", {small: (20e9, 20.0), big: (160e9, 80.0)}),
    ]
    d = repro.decompose(mix)
    assert d.hardware == pytest.approx([1.0, 1.0]) and d.workload[1] > d.workload[0]
    # same mix, the second machine 10% slower on everything: only H moves
    slow = [
        _run(repro, "a", {small: (80e9, 80.0), big: (40e9, 20.0)}),
        _run(repro, "b", {small: (80e9, 88.0), big: (40e9, 22.0)}),
    ]
    d = repro.decompose(slow)
    assert d.workload[0] == pytest.approx(d.workload[1]) and d.hardware[0] / d.hardware[1] == pytest.approx(1.1)
    for runs, dec in ((mix, repro.decompose(mix)), (slow, d)):
        for r, w, h, b in zip(runs, dec.workload, dec.hardware, dec.busy, strict=True):
            assert w * h * b == pytest.approx(r.score)  # score = W x H x busy, exactly
    assert repro.cv([1.0, 1.0]) == 0.0 and repro.cv([1.0]) is None
    assert repro.weighted_median([(1.0, 1.0), (5.0, 3.0)]) == 5.0


def test_reproducibility_compares_trials_with_the_first_run_and_writes_a_valid_config(tmp_path: Path) -> None:
    from aiperf.config import load_config

    repro = _bench("bench_reproducibility")
    a, b = _run(repro, "a", {}), _run(repro, "b", {})
    a.signature = {"w000-1": ("h1", "{}"), "w000-2": ("h2", "{}")}
    b.signature = {"w000-1": ("h1", "{}"), "w000-2": ("h3", "{}"), "w000-3": ("h4", "{}")}
    assert repro.same_trials([a, b]) == [(2, 2), (1, 2)]
    args = repro.parse_args(["--dataset", "synthetic", "--lags", "0", "1"])
    path = tmp_path / "c.toml"
    path.write_text(repro.experiment_config(args, "1m", 0))
    config = load_config(path)
    assert config.search.logical_lag == 0 and config.dataset.shape == (3, 64, 64) and config.run.duration_s == 60


def test_logical_cost_simulation_repeats_under_the_clock_and_only_waits_with_it() -> None:
    cost = _bench("bench_logical_cost")
    a = cost.simulate(2, 3, seed=0, lag=1, jitter=0.3, timing_seed=1)
    b = cost.simulate(2, 3, seed=0, lag=1, jitter=0.3, timing_seed=2)
    assert a.sequence == b.sequence and len(a.sequence) == 6
    assert a.wait_s >= 0.0 and a.busy_s > 0.0
    free = cost.simulate(2, 3, seed=0, lag=0, jitter=0.3, timing_seed=1)
    assert free.wait_s == 0.0 and len(free.sequence) == 6
