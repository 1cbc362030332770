"""The final report: results derived from the journals, written as HTML, JSON and text."""

from aiperf.report._analyze import (
    RESULT_SCHEMA,
    Result,
    TrialSummary,
    WorkerSummary,
    analyze,
    builtin_rules,
    environment,
)
from aiperf.report._html import render_html, write_report
from aiperf.report._json import result_to_json
from aiperf.report._text import (
    format_percent,
    format_rate,
    format_status,
    format_summary,
    trial_state,
)

__all__ = [
    "RESULT_SCHEMA",
    "Result",
    "TrialSummary",
    "WorkerSummary",
    "analyze",
    "builtin_rules",
    "environment",
    "format_percent",
    "format_rate",
    "format_status",
    "format_summary",
    "render_html",
    "result_to_json",
    "trial_state",
    "write_report",
]
