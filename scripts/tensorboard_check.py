"""Look at an experiment's TensorBoard the way a user does: a real TensorBoard, a real (headless) browser.

Starts ``tensorboard`` on the loopback for the experiment's two logdirs (``tb/`` and ``hparams/``), asks each for
what its dashboards would show through TensorBoard's own HTTP API (the runs the Scalars tab lists; the HParams
sessions and their columns), and takes a headless Chromium screenshot of the Time Series tab and of the HParams tab.
It fails, with one line saying why, when the Scalars tab would list more runs than TensorBoard ticks by default or
when the HParams tab would not list one session per trial.

Usage::

    aiperf run --duration 3m --experiment-dir /tmp/exp        # a real short run (60+ trials on 2 cores)
    python scripts/tensorboard_check.py /tmp/exp --out /tmp/tb-shots
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNS_TICKED_BY_DEFAULT = 40  # TensorBoard's run selector ticks no run by default past this many


@dataclass(frozen=True)
class Seen:
    """What the check saw: the Scalars runs, the HParams sessions and columns, and the screenshots."""

    scalar_runs: list[str]
    sessions: int
    hparam_columns: list[str]
    metric_columns: list[str]
    screenshots: list[Path]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class TensorBoard:
    """``tensorboard --logdir LOGDIR`` on 127.0.0.1 and a free port, for the duration of a ``with`` block."""

    def __init__(self, logdir: Path, tensorboard: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [tensorboard, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(self.port),
             "--reload_interval", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def __enter__(self) -> TensorBoard:
        limit = time.time() + 60
        while time.time() < limit:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"tensorboard exited: {(self.proc.stderr.read() if self.proc.stderr else '')[-500:]}"
                )
            try:
                _get(f"{self.url}/data/environment")
                return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"tensorboard did not answer on {self.url} within 60 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(browser: str, url: str, out: Path, wait_ms: int = 20_000) -> Path:
    """A 1400x1000 headless screenshot of ``url`` once its scripts had ``wait_ms`` of (virtual) time to render."""
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,1000",
         f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url],
        capture_output=True, timeout=180, check=False,
    )  # fmt: skip
    if not out.is_file() or out.stat().st_size < 10_000:
        raise RuntimeError(f"no screenshot of {url} (Chromium wrote {out.stat().st_size if out.exists() else 0} bytes)")
    return out


def check(experiment: Path, out: Path, browser: str, tensorboard: str = "tensorboard") -> Seen:
    """Run both TensorBoards, read what they serve, take the screenshots; raise RuntimeError on a finding."""
    tb, hparams = experiment / "tb", experiment / "hparams"
    trials = sum(1 for d in hparams.iterdir() if d.is_dir()) if hparams.is_dir() else 0
    out.mkdir(parents=True, exist_ok=True)
    with TensorBoard(tb, tensorboard) as board:
        runs: list[str] = []
        limit = time.time() + 60
        while not runs and time.time() < limit:  # the first load of the logdir takes a moment
            runs = list(_get(f"{board.url}/data/runs"))
            time.sleep(0.5 if not runs else 0)
        shots = [screenshot(browser, f"{board.url}/#timeseries", out / "scalars.png")]
    if not runs or len(runs) > RUNS_TICKED_BY_DEFAULT:
        raise RuntimeError(f"the Scalars tab would list {len(runs)} runs (ticked by default: up to 40): {runs[:5]}")
    with TensorBoard(hparams, tensorboard) as board:
        statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        groups: list[dict[str, Any]] = []
        experiment_info: dict[str, Any] = {}
        limit = time.time() + 120
        while len(groups) < trials and time.time() < limit:
            experiment_info = _get(f"{board.url}/data/plugin/hparams/experiment", {"experimentName": ""})
            reply = _get(
                f"{board.url}/data/plugin/hparams/session_groups",
                {"experimentName": "", "allowedStatuses": statuses, "colParams": [], "startIndex": 0,
                 "sliceSize": trials + 10},
            )  # fmt: skip
            groups = list(reply.get("sessionGroups", []))
            if len(groups) < trials:
                time.sleep(1)
        shots.append(screenshot(browser, f"{board.url}/#hparams", out / "hparams.png"))
    if len(groups) != trials or trials == 0:
        raise RuntimeError(f"the HParams tab lists {len(groups)} sessions for {trials} trials")
    return Seen(
        scalar_runs=sorted(runs),
        sessions=len(groups),
        hparam_columns=[h["name"] for h in experiment_info.get("hparamInfos", [])],
        metric_columns=[m["name"]["tag"] for m in experiment_info.get("metricInfos", [])],
        screenshots=shots,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("experiment", type=Path, help="an experiment directory (with tb/ and hparams/)")
    parser.add_argument("--out", type=Path, default=Path("tb-screenshots"), help="where the PNGs go")
    args = parser.parse_args(argv)
    browser = find_chromium()
    if browser is None:
        print("tensorboard_check: no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    tensorboard = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    try:
        seen = check(args.experiment, args.out, browser, tensorboard)
    except RuntimeError as exc:
        print(f"tensorboard_check: {exc}", file=sys.stderr)
        return 1
    print(f"scalars   {len(seen.scalar_runs)} runs: {', '.join(seen.scalar_runs)}")
    print(f"hparams   {seen.sessions} sessions; columns: {', '.join(seen.hparam_columns)}")
    print(f"metrics   {', '.join(seen.metric_columns)}")
    for shot in seen.screenshots:
        print(f"shot      {shot} ({shot.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
