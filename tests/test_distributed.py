"""Data parallelism: rank discovery from torchrun and SLURM variables, JSON broadcast without pickle, and real
2-rank DDP training on CPUs (gloo): identical models on every rank, exact image counts, accuracy close to one rank,
and stop requests and failures agreed by both ranks."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from aiperf.arch import seed
from aiperf.errors import ConfigError
from aiperf.events import ListSink
from aiperf.train import (
    DistContext,
    TrainConfig,
    TrialSpec,
    broadcast_json,
    first_host,
    load_dataset,
    rank_environment,
    train_trial,
)

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 64
EPOCHS = 4
STOP_AT_CALL = 30  # rank 1 asks to stop at its 30th poll: in epoch 2 (23 training + 6 evaluation steps per epoch)

# One rank of a data-parallel run. Rank 0 chooses the trial and shares it as JSON (as the worker's search does);
# every rank then trains it. Three trials: a normal one, one that rank 1 asks to stop, one that diverges.
WORKER = textwrap.dedent(
    f"""
    import json, sys, torch
    from pathlib import Path
    torch.set_num_threads(1)
    from aiperf.arch import Graph, seed
    from aiperf.events import ListSink
    from aiperf.train import (TrainConfig, TrialSpec, broadcast_json, init_distributed, load_dataset,
                              shutdown_distributed, train_trial)

    out, backend = Path(sys.argv[1]), sys.argv[2]
    ctx = init_distributed(backend, device="cpu")
    ds = load_dataset("digits")
    plan = None
    if ctx.is_main:
        plan = {{"arch": seed("resnet-tiny", (1, 8, 8), 10).to_json(), "epochs": {EPOCHS},
                "hparams": {{"learning_rate": 0.05, "batch_size": {GLOBAL_BATCH} // ctx.world_size,
                            "label_smoothing": 0.1, "warmup_epochs": 1}}}}
    plan = broadcast_json(plan, ctx)
    graph = Graph.from_json(plan["arch"])
    cfg = TrainConfig(device="cpu", precision="fp32", backend=backend)
    report = {{"rank": ctx.rank, "world_size": ctx.world_size, "local_rank": ctx.local_rank,
               "backend": ctx.backend, "trials": []}}
    for trial in ("normal", "stop", "diverge"):
        calls = []
        def should_stop():
            calls.append(1)
            return trial == "stop" and ctx.rank == 1 and len(calls) >= {STOP_AT_CALL}
        hparams = dict(plan["hparams"], learning_rate=1e30) if trial == "diverge" else plan["hparams"]
        epochs = plan["epochs"] if trial == "normal" else 3
        sink = ListSink()
        result = train_trial(TrialSpec("w000-" + trial, graph, hparams, epochs=epochs), ds, cfg, sink,
                             should_stop, dist=ctx)
        report["trials"].append({{"trial": trial, "status": result.status, "reason": result.reason,
                                 "best_top1": result.best_top1, "digest": result.state_digest,
                                 "epochs": len(result.epochs), "polls": len(calls), "events": sink.events}})
    (out / f"rank{{ctx.rank}}.json").write_text(json.dumps(report))
    shutdown_distributed(ctx)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This environment without rank variables that an enclosing launcher (SLURM, torchrun) may have set."""
    prefixes = ("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_", "TORCHELASTIC_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def run_ranks(argv: list[str], out: Path, ranks: int = 2, timeout: float = 300) -> list[dict]:
    proc = subprocess.run(argv, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]


# -- rank discovery (pure functions) ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("node1", "node1"),
        ("gpu[07-09,12],cpu1", "gpu07"),
        ("cpu1,gpu[1-4]", "cpu1"),
        ("rack[2-3]-n[010-020]", "rack2-n010"),
        ("n[5]", "n5"),
    ],
)
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_malformed_node_list_is_a_config_error():
    with pytest.raises(ConfigError, match="unclosed"):
        first_host("gpu[1-2")


def test_rank_environment_from_torchrun_slurm_or_nothing():
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h0",
                "MASTER_PORT": "29400", "SLURM_PROCID": "0", "SLURM_NTASKS": "9"}  # fmt: skip
    env = rank_environment(torchrun)
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 4, 1, 2)
    assert (env.master_addr, env.master_port, env.source) == ("h0", 29400, "torchrun")
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_STEP_NODELIST": "gpu[03-06]",
             "SLURM_STEP_NUM_NODES": "4", "SLURM_JOB_ID": "1234", "SLURM_STEP_ID": "2"}  # fmt: skip
    env = rank_environment(slurm)
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (5, 8, 1, 2)
    assert (env.master_addr, env.source) == ("gpu03", "slurm")
    assert 10_000 <= env.master_port < 30_000
    assert rank_environment(slurm).master_port == env.master_port, "every task derives the same port"
    assert rank_environment({**slurm, "SLURM_STEP_ID": "3"}).master_port != env.master_port, "a new step, a new port"
    assert rank_environment(slurm, master_addr="10.0.0.1", master_port=4000).master_addr == "10.0.0.1"
    assert rank_environment({**slurm, "MASTER_PORT": "5000"}).master_port == 5000
    single = rank_environment({})
    assert (single.rank, single.world_size, single.source) == (0, 1, "single")


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"RANK": "2", "WORLD_SIZE": "2"}, "inconsistent torchrun ranks"),
        ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, "no SLURM_STEP_NODELIST"),
    ],
)
def test_inconsistent_rank_variables_are_config_errors(environ, needle):
    with pytest.raises(ConfigError, match=needle):
        rank_environment(environ)


def test_broadcast_json_in_a_world_of_one_round_trips():
    ctx = DistContext()
    assert broadcast_json({"a": (1, 2), "b": None}, ctx) == {"a": [1, 2], "b": None}
    with pytest.raises(Exception, match="not JSON-able"):
        broadcast_json({"x": float("nan")}, ctx)


# -- real processes -----------------------------------------------------------------------------------------------
SLURM_RANK = textwrap.dedent(
    """
    import json, sys, torch
    import torch.distributed as dist
    from aiperf.train import broadcast_json, init_distributed, shutdown_distributed
    ctx = init_distributed("ddp", device="cpu")
    got = broadcast_json({"from": ctx.rank, "text": "héllo"} if ctx.is_main else {"from": "ignored"}, ctx)
    total = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(total)
    print(json.dumps({"ctx": [ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend, ctx.is_main],
                      "got": got, "sum": total.item()}))
    shutdown_distributed(ctx)
    """
)


def test_slurm_variables_set_up_a_gloo_group_and_broadcast_json(tmp_path):
    port = free_port()
    procs = []
    for rank in range(2):
        env = {**clean_env(), "SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank),
               "SLURM_STEP_NODELIST": "localhost", "SLURM_JOB_ID": "77", "MASTER_PORT": str(port)}  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", SLURM_RANK], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()[-3000:]
        outputs.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    assert [o["ctx"] for o in outputs] == [[0, 2, 0, "gloo", True], [1, 2, 1, "gloo", False]]
    assert all(o["got"] == {"from": 0, "text": "héllo"} for o in outputs)
    assert all(o["sum"] == 3.0 for o in outputs)


@pytest.fixture(scope="module")
def ddp_reports(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    script = out / "worker.py"
    script.write_text(WORKER)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
            str(out), "ddp"]  # fmt: skip
    return run_ranks(argv, out)


def test_ddp_ranks_end_with_identical_models_and_exact_counts(ddp_reports):
    assert [(r["rank"], r["world_size"], r["backend"]) for r in ddp_reports] == [(0, 2, "gloo"), (1, 2, "gloo")]
    normal = [r["trials"][0] for r in ddp_reports]
    assert all(t["status"] == "finished" for t in normal), normal
    assert normal[0]["digest"] == normal[1]["digest"], "parameters and buffers must be identical on both ranks"
    assert normal[1]["events"] == [], "only rank 0 emits events"
    events = normal[0]["events"]
    assert events[0]["type"] == "trial_start" and events[0]["world_size"] == 2
    assert events[0]["global_batch_size"] == GLOBAL_BATCH
    epochs = [e for e in events if e["type"] == "epoch"]
    assert len(epochs) == EPOCHS
    for event in epochs:  # totals over both ranks, each sample exactly once
        assert (event["train_images"], event["eval_images"]) == (1437, 360)


@functools.cache
def one_rank_top1() -> float:
    """Best top-1 of the ranks' normal trial trained in this process on one rank, with the same global batch."""
    torch.set_num_threads(1)
    ds = load_dataset("digits")
    hparams = {"learning_rate": 0.05, "batch_size": GLOBAL_BATCH, "label_smoothing": 0.1, "warmup_epochs": 1}
    spec = TrialSpec("w000-normal", seed("resnet-tiny", (1, 8, 8), 10), hparams, epochs=EPOCHS)
    single = train_trial(spec, ds, TrainConfig(device="cpu", precision="fp32"), ListSink())
    assert single.best_top1 is not None
    return single.best_top1


def test_two_ranks_reach_the_accuracy_of_one_with_the_same_global_batch(ddp_reports):
    single = one_rank_top1()
    two = ddp_reports[0]["trials"][0]["best_top1"]
    print(f"\nbest top-1 after {EPOCHS} epochs: 1 rank {single:.3f}, 2 ranks {two:.3f}")
    assert single > 0.9
    assert abs(two - single) <= 0.03


def test_a_stop_request_on_one_rank_stops_both_at_the_same_step(ddp_reports):
    stop = [r["trials"][1] for r in ddp_reports]
    assert [t["status"] for t in stop] == ["stopped", "stopped"]
    assert stop[0]["reason"] == stop[1]["reason"] and "epoch 2" in stop[0]["reason"]
    # Rank 1 asked at its 30th poll; the flags of that step are read after the next one: one step late at most.
    assert [t["polls"] for t in stop] == [STOP_AT_CALL + 1, STOP_AT_CALL + 1]
    assert [e["epoch"] for e in stop[0]["events"] if e["type"] == "epoch"] == [1], "no event for the partial epoch"
    assert all(t["epochs"] == 1 for t in stop)


def test_a_diverging_trial_fails_on_both_ranks(ddp_reports):
    diverge = [r["trials"][2] for r in ddp_reports]
    assert [t["status"] for t in diverge] == ["failed", "failed"]
    assert diverge[0]["reason"] == diverge[1]["reason"]
    assert diverge[0]["reason"].startswith("non-finite training loss in epoch 1, step ")
