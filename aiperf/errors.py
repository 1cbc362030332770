"""The one exception family of aiperf.

Every error a user can cause (a broken config, a malformed architecture, a missing dataset, a corrupt journal
record) is raised as a subclass of :class:`AiperfError` whose message is one line saying what is wrong and what to
fix. The CLI prints that line and exits with status :data:`EXIT_USAGE`; library code never calls ``sys.exit``.

The exit statuses of the ``aiperf`` command are defined here, once, so that scripts and CI pipelines around the
benchmark can tell a valid result from one that is not (docs/exit-codes.md lists them):

=====================  ===  ==========================================================================================
``EXIT_OK``              0  a valid run (``aiperf run``); a command that did what was asked
``EXIT_FAILED``          1  a check found a problem (``aiperf verify``, ``aiperf data check``)
``EXIT_USAGE``           2  a usage or set-up error: a bad flag or config, missing data, nothing usable was run
``EXIT_NOT_VALID``       3  the run finished its window but its result is not valid under the dataset's rules
``EXIT_INTERRUPTED``     4  the run was interrupted (Ctrl-C, SIGTERM, scancel) or ended before its deadline
=====================  ===  ==========================================================================================
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_VALID",
    "EXIT_OK",
    "EXIT_USAGE",
    "AiperfError",
    "ArchError",
    "ConfigError",
    "DataError",
    "HistoryError",
    "LaunchError",
    "TrainError",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_VALID = 3
EXIT_INTERRUPTED = 4

# Every character str.splitlines breaks at, written as its escape: a message quoting input stays one line.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


class AiperfError(Exception):
    """Base class of every error aiperf raises on purpose.

    A message is kept to one line whatever input it quotes (a layer type, a path, a config value): line breaks in
    it are written as escapes (``\\n``), so the CLI's one-line error cannot be split or forged by the input.
    """

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (args[0].translate(_LINE_BREAKS), *args[1:])
        super().__init__(*args)


class ConfigError(AiperfError):
    """The configuration (file, flags or search space) is invalid."""


class ArchError(AiperfError):
    """An architecture is malformed, inconsistent or over a size ceiling."""


class DataError(AiperfError):
    """A dataset is missing, has the wrong layout, or cannot be read."""


class HistoryError(AiperfError):
    """The shared history (journals, experiment directory) is unusable."""


class TrainError(AiperfError):
    """Training a trial could not start or be completed."""


class LaunchError(AiperfError):
    """Workers could not be started or supervised."""
