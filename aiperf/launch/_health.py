"""Node health as the scheduler sees it: the ``sinfo`` command line and its reader, pure functions.

The master asks for every node of the allocation in one call, inside its regular poll (at most every
:data:`HEALTH_EVERY_S`), so detecting a lost node costs one short command whatever the number of workers. A node
is unhealthy when SLURM marks it not responding (the ``*`` after its state) or its state is one in which no step
can run there: DOWN, DRAIN/DRAINED/DRAINING, FAIL/FAILING, and the states of a node that is not there
(powered down, future, invalid). Everything else (idle, mixed, allocated, completing) is healthy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from aiperf.errors import LaunchError
from aiperf.launch._slurm import node_state

__all__ = ["HEALTH_EVERY_S", "UNHEALTHY_STATES", "NodeHealth", "node_health_argv", "parse_node_health"]

HEALTH_EVERY_S = 2.0  # the scheduler is asked at most this often: the "one scheduler poll" of the loss budget
HEALTH_FORMAT = "%N|%T|%E"  # name, long state with sinfo's markers, the reason an administrator or slurmctld gave
UNHEALTHY_STATES = frozenset(
    {
        "down",
        "drain",
        "drained",
        "draining",
        "fail",
        "failing",
        "future",
        "inval",
        "powered_down",
        "powering_down",
        "power_down",
        "not_responding",
    }
)


@dataclass(frozen=True)
class NodeHealth:
    """One node's state as sinfo reports it; ``reason`` is '' where SLURM gives none."""

    name: str
    state: str
    responding: bool
    reason: str

    @property
    def healthy(self) -> bool:
        """Can run a step now: responding, and in no state that keeps steps off it."""
        return self.responding and self.state not in UNHEALTHY_STATES

    @property
    def words(self) -> str:
        """The scheduler's words, for the journal: ``down* (Not responding)``, ``drained (maintenance)``."""
        text = self.state + ("" if self.responding else "*")
        return f"{text} ({self.reason})" if self.reason else text


def node_health_argv(nodes: Iterable[str]) -> list[str]:
    """``sinfo`` for exactly ``nodes``, one line each, in the format :func:`parse_node_health` reads."""
    names = list(nodes)
    if not names or any(not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+", n) for n in names):
        raise LaunchError(f"not a list of SLURM node names: {names!r}")
    return ["sinfo", "--noheader", "-N", "-n", ",".join(names), "-o", HEALTH_FORMAT]


def parse_node_health(text: str) -> dict[str, NodeHealth]:
    """Nodes from ``sinfo --noheader -N -o '%N|%T|%E'``; a node listed in several partitions appears once, and a
    reason containing ``|`` is kept whole. The state column is read as :func:`aiperf.launch._slurm.parse_sinfo`
    reads it (:func:`~aiperf.launch._slurm.node_state`); the format differs because health needs the reason."""
    nodes: dict[str, NodeHealth] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = line.split("|", 2)
        if len(parts) != 3:
            raise LaunchError(f"sinfo health line has {len(parts)} fields, expected 3: {line!r}")
        name, state, reason = (p.strip() for p in parts)
        if not name:
            raise LaunchError(f"sinfo health line names no node: {line!r}")
        base, responding, _ = node_state(state, line)
        nodes.setdefault(
            name,
            NodeHealth(
                name=name,
                state=base,
                responding=responding,
                reason="" if reason.lower() in {"none", "(null)"} else reason,
            ),
        )
    return nodes
