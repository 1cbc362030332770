"""First contact with the command line: exit statuses, mistakes caught before anything starts, argument parsing.

The exit statuses are what scripts and CI pipelines around the benchmark read, so each is checked on a real result
(the mapping) and on a real ``aiperf run`` (the end-to-end path: a short window that is not valid, a window
interrupted by SIGINT). Every early error must leave no directory and print exactly one ``aiperf: error:`` line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_report import RULES, make_experiment

from aiperf.cli import main, run_exit_status
from aiperf.errors import EXIT_INTERRUPTED, EXIT_NOT_VALID, EXIT_OK, EXIT_USAGE
from aiperf.paths import ExperimentPaths
from aiperf.report import analyze


def test_exit_statuses_are_distinct_and_usage_is_2() -> None:
    codes = [EXIT_OK, EXIT_USAGE, EXIT_NOT_VALID, EXIT_INTERRUPTED]
    assert len(set(codes)) == len(codes)
    assert (EXIT_OK, EXIT_USAGE) == (0, 2)


def test_a_valid_finished_run_exits_0_and_a_not_valid_one_3(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="finished")
    result = analyze(exp.paths)
    assert result.valid, [r for r in result.rules if not r.passed]
    assert run_exit_status(result) == EXIT_OK
    strict = analyze(exp.paths, dataset_rules={**RULES, "top1_threshold": 0.999})
    assert strict.status == "finished" and not strict.valid
    assert run_exit_status(strict) == EXIT_NOT_VALID


def test_an_interrupted_run_exits_4_before_not_valid(tmp_path: Path) -> None:
    """A master that died (no end record) is interrupted, and interrupted wins over the failed rules."""
    exp = make_experiment(tmp_path / "exp", state="interrupted")
    result = analyze(exp.paths)
    assert result.status == "interrupted" and not result.valid
    assert run_exit_status(result) == EXIT_INTERRUPTED


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].count("aiperf: error:") == 1, lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--dataset", "digits", "--data-path", "/tmp"], "digits takes no path"),
        (["--dataset", "synthetic", "--data-path", "/tmp"], "synthetic takes no path"),
        (["--dataset", "cifar10", "--data-path", "/nonexistent/cifar"], "/nonexistent/cifar does not exist"),
        (["--dataset", "imagenet", "--data-path", "{empty}"], "no train/ in"),
        (["--dataset", "cifar10", "--data-path", "{empty}"], "no data_batch_1 in"),
        (["--dataset", "cifar10", "--data-path", "{file}"], "is not a directory"),
    ],
)
def test_dataset_mistakes_stop_the_run_before_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("not a folder\n")
    flags = [f.format(empty=tmp_path / "empty", file=tmp_path / "file") for f in flags]
    started = time.monotonic()
    code = main(["run", *flags, "--experiment-dir", str(tmp_path / "exp")])
    elapsed = time.monotonic() - started
    line = _one_error_line(capsys.readouterr().err)
    assert code == EXIT_USAGE
    assert expected in line, line
    assert not (tmp_path / "exp").exists()
    assert not (tmp_path / "reports").exists()
    assert elapsed < 3.0, f"caught after {elapsed:.1f} s: a probe or a worker ran first"


def test_cuda_on_a_host_without_one_stops_before_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA device: the check has nothing to refuse")
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--device", "cuda", "--experiment-dir", str(tmp_path / "exp")])
    line = _one_error_line(capsys.readouterr().err)
    assert code == EXIT_USAGE and "no CUDA device" in line, line
    assert not (tmp_path / "exp").exists()


def test_a_missing_seed_architecture_stops_before_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "aiperf.toml"
    config.write_text(f'[search]\nseed_archs = ["{tmp_path / "missing.json"}"]\n')
    code = main(["run", "--config", str(config), "--experiment-dir", str(tmp_path / "exp")])
    line = _one_error_line(capsys.readouterr().err)
    assert code == EXIT_USAGE and "missing.json" in line, line
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("value", ["-5m", "-5", "-0.5h"])
def test_a_negative_duration_gets_the_projects_own_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--duration", value])
    line = _one_error_line(capsys.readouterr().err)
    assert code == EXIT_USAGE
    assert "expected one argument" not in line
    assert "duration" in line and value in line, line
    assert not (tmp_path / "reports").exists()


def _run(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aiperf", "run", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )


def _window_open(paths: ExperimentPaths) -> bool:
    try:
        return '"experiment_start"' in paths.master_journal.read_text()
    except OSError:
        return False


@pytest.mark.slow
def test_a_real_short_run_exits_3_and_a_real_interrupted_run_exits_4(tmp_path: Path) -> None:
    short = _run(["--duration", "4s", "--workers", "1", "--experiment-dir", str(tmp_path / "short")], tmp_path)
    out, _ = short.communicate(timeout=240)
    assert short.returncode == EXIT_NOT_VALID, out
    result = json.loads(ExperimentPaths(tmp_path / "short").result_json.read_text())
    assert result["status"] == "finished" and result["validity"]["valid"] is False

    paths = ExperimentPaths(tmp_path / "long")
    long = _run(["--duration", "10m", "--workers", "1", "--experiment-dir", str(paths.root)], tmp_path)
    try:
        limit = time.time() + 180
        while not _window_open(paths) and time.time() < limit and long.poll() is None:
            time.sleep(0.5)
        assert _window_open(paths), "the window never opened"
        time.sleep(2)
        long.send_signal(signal.SIGINT)
        out, _ = long.communicate(timeout=120)
    finally:
        if long.poll() is None:
            os.killpg(long.pid, signal.SIGKILL)
    assert long.returncode == EXIT_INTERRUPTED, out
    assert "interrupted by SIGINT" in paths.result_json.read_text()


def test_negative_numbers_still_reach_options_that_take_several(capsys: pytest.CaptureFixture[str]) -> None:
    """Only values argparse would mistake for options are attached: ``--input-shape -3 8 8`` keeps its three."""
    code = main(["arch", "resnet-tiny", "--input-shape", "-3", "8", "8", "--num-classes", "10"])
    err = capsys.readouterr().err
    assert "expected 3 arguments" not in err and "expected one argument" not in err
    assert code == EXIT_USAGE and err.count("aiperf: error:") == 1, err
