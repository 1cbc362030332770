"""Small inline-SVG charts for the self-contained HTML report (no plotting library, no external files).

The SVG is meant to sit inside an HTML5 document, so it carries no ``xmlns`` (the HTML parser supplies it) and the
report stays free of any URL. Every label is HTML-escaped here, because titles and axis names may come from input.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

from aiperf.config import format_duration
from aiperf.report._text import si_prefix

__all__ = ["bar", "line_chart", "nice_ticks", "time_ticks"]

_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 x 10^k apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if raw <= m * magnitude)
    first = math.floor(lo / step) * step
    ticks: list[float] = []
    k = 0
    while True:
        t = first + k * step
        ticks.append(round(t, 12))
        if t >= hi - step * 1e-9:
            return ticks
        k += 1


def time_ticks(span_s: float, count: int = 6) -> list[float]:
    """Tick positions in seconds at a round duration (10 s, 5 min, 1 h, ...) covering [0, span_s]."""
    span_s = max(span_s, 1.0)
    step = next((s for s in _TIME_STEPS if span_s / s <= count), None)
    if step is None:
        step = 86400 * math.ceil(span_s / count / 86400)
    ticks = [0.0]
    while ticks[-1] < span_s - 1e-9:
        ticks.append(ticks[-1] + step)
    return ticks


def _number(value: float) -> str:
    return f"{value:.6g}"


def line_chart(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    y_unit: str = "",
    si: bool = False,
    percent: bool = False,
    color: str = "#2563eb",
    width: int = 1000,
    height: int = 260,
    x_format: Callable[[float], str] = format_duration,
) -> str:
    """An inline SVG line chart of ``(seconds, value)`` points; x from 0 to the last point's time, y from 0.

    ``si`` scales the y axis by one SI prefix chosen from its maximum (``GFLOPS``); ``percent`` shows fractions as
    percentages. The last value is marked and labelled.
    """
    left, right, top, bottom = 72, 20, 30, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    pts = [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
        f' aria-label="{_e(title)}"><title>{_e(title)}</title>'
        f'<text x="{left}" y="18" class="chart-title">{_e(title)}</text>'
    )
    if not pts:
        return (
            head + f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle"'
            ' class="chart-empty">no finished epoch yet</text></svg>'
        )
    x_max = max(*(x for x, _ in pts), 1.0)
    y_hi = max(*(y for _, y in pts), 0.0)
    y_lo = min(*(y for _, y in pts), 0.0)
    scale, prefix = si_prefix(y_hi) if si else (1.0, "")
    if percent:
        scale, unit = 0.01, "%"
    else:
        unit = f"{prefix}{y_unit}"
    ticks_y = nice_ticks(y_lo / scale, y_hi / scale if y_hi > y_lo else y_lo / scale + 1.0)
    lo, hi = ticks_y[0] * scale, ticks_y[-1] * scale
    ticks_x = time_ticks(x_max)
    x_end = ticks_x[-1]

    def sx(x: float) -> float:
        return left + plot_w * x / x_end

    def sy(y: float) -> float:
        return top + plot_h * (1 - (y - lo) / (hi - lo))

    parts = [head]
    for t in ticks_y:
        y = sy(t * scale)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_e(_number(t))}</text>'
        )
    for t in ticks_x:
        x = sx(t)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" class="axis"/>'
            f'<text x="{x:.1f}" y="{top + plot_h + 17}" text-anchor="middle" class="tick">{_e(x_format(t))}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>'
        f'<text x="14" y="{top + plot_h / 2:.1f}" transform="rotate(-90 14 {top + plot_h / 2:.1f})"'
        f' text-anchor="middle" class="tick">{_e(unit)}</text>'
        f'<text x="{left + plot_w}" y="{height - 3}" text-anchor="end" class="tick">time since start</text>'
    )
    coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
    parts.append(f'<polyline points="{coords}" fill="none" stroke="{_e(color)}" stroke-width="2"/>')
    lx, ly = pts[-1]
    label = f"{ly / scale:.3g}{'%' if percent else ' ' + unit if unit else ''}"
    parts.append(
        f'<circle cx="{sx(lx):.1f}" cy="{sy(ly):.1f}" r="3.5" fill="{_e(color)}"/>'
        f'<text x="{sx(lx) - 6:.1f}" y="{sy(ly) - 8:.1f}" text-anchor="end" class="last">{_e(label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def bar(fraction: float, width: int = 160, height: int = 12, color: str = "#16a34a") -> str:
    """A small horizontal bar filled to ``fraction`` (clamped to [0, 1]), for utilisation tables."""
    f = min(max(fraction if math.isfinite(fraction) else 0.0, 0.0), 1.0)
    return (
        f'<svg class="bar" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
        f' aria-label="{100 * f:.0f}%"><rect x="0" y="0" width="{width}" height="{height}" fill="#e5e7eb"/>'
        f'<rect x="0" y="0" width="{width * f:.1f}" height="{height}" fill="{_e(color)}"/></svg>'
    )
