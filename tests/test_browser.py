"""What a user sees, measured in a real browser (headless Chromium): the report's layout and TensorBoard.

The layout of report.html is a matter of CSS that no HTML parser can judge: whether a table overflows the page, a
trial id wraps, a chart uses the width. The test loads the real report in Chromium at two window widths and reads
the measurements back from the page. TensorBoard is started for real on the loopback, asked through its HTTP API
what its Scalars and HParams tabs list, and screenshotted. Each test skips, with the reason, where no Chromium is
installed (``apt-get install chromium``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_report import _trial, make_experiment

from aiperf.history import JournalWriter
from aiperf.report import analyze, write_report

ROOT = Path(__file__).resolve().parents[1]
_MEASURE = """<script>
const table = document.querySelector('#architectures table');
const box = table.parentElement;
const ids = [...document.querySelectorAll('td.id')].map(td => {
  const range = document.createRange(); range.selectNodeContents(td);
  return [td.textContent, new Set([...range.getClientRects()].map(r => Math.round(r.top))).size];
});
const chart = document.querySelector('svg.chart').getBoundingClientRect().width;
const section = document.querySelector('#plots').getBoundingClientRect().width;
document.title = JSON.stringify({page: document.documentElement.scrollWidth, window: window.innerWidth,
  table: table.scrollWidth, box: box.clientWidth, ids: ids, chart: chart, section: section,
  hparams: document.querySelector('#architectures tbody td:nth-child(9)').textContent});
</script>"""


def chromium() -> str:
    """The Chromium binary, or skip the test with the reason."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on this machine (apt-get install chromium): the layout is checked in a real browser")


def measure(page: Path, width: int) -> dict[str, Any]:
    """Load ``page`` in headless Chromium at ``width`` px and return what the measuring script put in the title."""
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},900", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    start, end = done.stdout.find("<title>"), done.stdout.find("</title>")
    assert start >= 0 and end > start, done.stdout[:2000] + done.stderr[-2000:]
    return dict(json.loads(done.stdout[start + len("<title>") : end].replace("&quot;", '"').replace("&amp;", "&")))


@pytest.mark.parametrize("width", [1280, 1024])
def test_the_report_fits_the_page_in_a_real_browser(tmp_path: Path, width: int) -> None:
    exp = make_experiment(tmp_path / "exp")
    long_id = "w000-12345-restart-7"
    hparams: dict[str, Any] = {k: 0.1234567890123456 for k in ("learning_rate", "weight_decay", "momentum", "dropout")}
    hparams |= {"batch_size": 256, "warmup_epochs": 3, "label_smoothing": 0.09999999999999998}
    with JournalWriter(exp.paths.journal("w000"), "w000", host="host-a") as w0:
        _trial(w0, [], long_id, exp.t0, [5.0], [0.99], hparams=hparams)  # the best trial: first in the table
    write_report(analyze(exp.paths), exp.paths)
    page = exp.paths.root / "measured.html"
    page.write_text(exp.paths.report_html.read_text().replace("</body>", _MEASURE + "</body>"))
    seen = measure(page, width)
    assert seen["page"] <= seen["window"], seen  # nothing widens the page
    assert seen["table"] <= seen["box"] + 1, seen  # the architectures table fits without scrolling
    wrapped = [text for text, lines in seen["ids"] if lines > 1]
    assert not wrapped and any(text == long_id for text, _ in seen["ids"]), seen["ids"]
    assert seen["chart"] >= 0.95 * seen["section"], seen  # the plots use the width
    assert "0.1235" in seen["hparams"] and "0.12345" not in seen["hparams"], seen["hparams"]
    assert "0.09999" not in seen["hparams"] and "0.1" in seen["hparams"], seen["hparams"]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tensorboard_shows_two_scalar_runs_and_one_hparams_session_per_trial(tmp_path: Path) -> None:
    """60 trials (past the ~40 runs TensorBoard ticks by default) through the real monitor, then the real
    TensorBoard read through its HTTP API and screenshotted by Chromium (scripts/tensorboard_check.py)."""
    browser = chromium()
    bench = _load(ROOT / "bench" / "bench_monitor.py", "bench_monitor")
    tb_check = _load(ROOT / "scripts" / "tensorboard_check.py", "tensorboard_check")
    figures = bench.run(trials=60, workers=12, epochs=2, batch=40, root=tmp_path / "exp")
    assert figures["tb_runs"] == 2 and figures["hp_runs"] == 60
    tensorboard = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    seen = tb_check.check(tmp_path / "exp", tmp_path / "shots", browser, tensorboard)
    assert seen.scalar_runs == [".", "epochs"]
    assert seen.sessions == 60
    assert {"learning_rate", "arch/flops", "arch/params", "arch/depth", "worker", "status"} <= set(seen.hparam_columns)
    assert {"trial/best_top1", "trial/epochs"} <= set(seen.metric_columns)
    assert [p.name for p in seen.screenshots] == ["scalars.png", "hparams.png"]
    assert all(p.stat().st_size > 10_000 for p in seen.screenshots)
