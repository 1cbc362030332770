"""Lost nodes: detected from the scheduler or the heartbeats, excluded at once, recorded, and let back in.

Two signals, whichever comes first:

- **the scheduler** (SLURM): the launcher's :meth:`~aiperf.launch.Launcher.node_health`, one ``sinfo`` for all
  nodes at most every 2 s inside the master's poll. A node SLURM reports DOWN, DRAIN*, FAIL* or not responding is
  lost at the next poll. SLURM itself notices a node whose slurmd died only at its next ping of the node (every
  ``SlurmdTimeout``/3).
- **the heartbeats** (every launcher, and the only signal of the local and mpirun launchers): a node whose every
  worker has written nothing for :data:`HEARTBEAT_MISSED` heartbeat periods, while a worker on another node still
  writes, is lost. The second condition keeps a stalled shared file system, which silences everyone, from looking
  like the loss of every node; a single silent worker is the watchdog's (``stuck_after``).

A lost node is excluded at once (``node_lost`` then ``node_excluded`` in the master's journal, with the scheduler's
words), its workers are stopped without waiting on the node and relaunched on the healthy node with the fewest
workers (``worker_moved``); a move is not one of the worker's failures, so it spends none of ``max_restarts``. A
node the scheduler reports healthy again after it had reported it unhealthy (``scontrol update state=resume``, a
restarted slurmd with ``ReturnToService=2``) rejoins (``node_rejoined``) and takes workers again. The report bills
each node's peak only for the seconds it was part of the run (aiperf.report).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiperf.launch._base import Launcher, WorkerHandle

__all__ = ["HEARTBEAT_MISSED", "MIN_SILENCE_S", "NodeWatch"]

HEARTBEAT_MISSED = 3  # heartbeat periods of silence after which a node's workers count as lost
MIN_SILENCE_S = 6.0  # ... but never less than this: a loaded machine delays a heartbeat by a few seconds


class _Slot(Protocol):
    """What the watch reads and changes of the master's worker slots."""

    worker_id: str
    node: str
    handle: WorkerHandle | None
    started_at: float
    last_seen: float
    gave_up: bool


@dataclass
class NodeWatch:
    """Follows the nodes' health for the master; :meth:`check` once per poll returns the workers to relaunch.

    Args:
        launcher: asked for the scheduler's view (``node_health``), and told which nodes to exclude or include.
        emit: journals one master record (never raises: the master's own full-disk handling is behind it).
        say: one line to the master's log.
        heartbeat_s: the workers' heartbeat period.
    """

    launcher: Launcher
    emit: Callable[[dict[str, Any]], None]
    say: Callable[[str], None]
    heartbeat_s: float
    lost: dict[str, str] = field(default_factory=dict)  # node -> the signal that lost it
    _scheduler_bad: set[str] = field(default_factory=set)  # nodes the scheduler reported unhealthy since their loss

    @property
    def silence_s(self) -> float:
        """How long every worker of a node must be silent for the node to count as lost."""
        return max(HEARTBEAT_MISSED * self.heartbeat_s, MIN_SILENCE_S)

    def healthy_nodes(self) -> list[str]:
        return [n for n in self.launcher.nodes() if n not in self.lost]

    def check(self, now: float, slots: Sequence[_Slot]) -> list[_Slot]:
        """Read the signals; lose, exclude and rejoin nodes; move the workers of lost nodes. Returns the slots the
        master must relaunch now (their ``node`` already changed; their old handle already stopped)."""
        health = self.launcher.node_health(now)
        if health is not None:
            for node, words in health.items():
                if words is not None:
                    if node not in self.lost:
                        self._lose(node, "scheduler", f"the scheduler reports {node} {words}", words, slots)
                    self._scheduler_bad.add(node)
                elif node in self.lost and node in self._scheduler_bad:
                    self._rejoin(node, "healthy")
        for node in self._silent_nodes(now, slots):
            silent = self.silence_s
            self._lose(node, "heartbeat", f"no record from its workers for {silent:.0f} s", None, slots)
        moved = []
        for slot in slots:
            if slot.gave_up or slot.node not in self.lost:
                continue
            target = self._target(slots)
            if target is None:
                continue  # nowhere to go yet: it waits for a node to rejoin
            old = slot.node
            if slot.handle is not None:
                slot.handle.abandon()
                slot.handle = None
            slot.node = target
            self.emit(
                {
                    "type": "worker_moved",
                    "moved": slot.worker_id,
                    "from_node": old,
                    "to_node": target,
                    "reason": f"node {old} lost ({self.lost[old]})",
                }
            )
            self.say(f"{slot.worker_id} moves from lost node {old} to {target}")
            moved.append(slot)
        return moved

    def lost_under(self, node: str, now: float, slots: Sequence[_Slot]) -> bool:
        """A worker on ``node`` just ended: ask the scheduler afresh whether the node died under it. True if the
        node is lost (then :meth:`check` moves its workers), so the master never restarts a worker onto it."""
        if node in self.lost:
            return True
        health = self.launcher.node_health(now, fresh=True)
        words = (health or {}).get(node)
        if words is None:
            return False
        self._scheduler_bad.add(node)
        self._lose(node, "scheduler", f"the scheduler reports {node} {words}", words, slots)
        return True

    def _silent_nodes(self, now: float, slots: Sequence[_Slot]) -> list[str]:
        """Nodes whose every running worker, seen alive since its launch, is silent while another node's is not."""
        limit = self.silence_s
        silent: dict[str, bool] = {}
        for slot in slots:
            if slot.gave_up or slot.handle is None or slot.node in self.lost or slot.handle.poll() is not None:
                continue
            if slot.last_seen <= slot.started_at:
                silent[slot.node] = False  # still starting up: the watchdog's, not a sign of the node
                continue
            quiet = now - slot.last_seen > limit
            silent[slot.node] = silent.get(slot.node, True) and quiet
        if not any(not quiet for quiet in silent.values()):
            return []  # nobody writes: the shared file system or the master, not one node
        return [node for node, quiet in silent.items() if quiet]

    def _target(self, slots: Sequence[_Slot]) -> str | None:
        nodes = self.healthy_nodes()
        if not nodes:
            return None
        load = {n: sum(1 for s in slots if s.node == n and not s.gave_up) for n in nodes}
        return min(nodes, key=lambda n: (load[n], nodes.index(n)))

    def _lose(self, node: str, signal: str, reason: str, words: str | None, slots: Sequence[_Slot]) -> None:
        self.lost[node] = signal
        workers = sorted(s.worker_id for s in slots if s.node == node and not s.gave_up)
        self.emit(
            {
                "type": "node_lost",
                "node": node,
                "signal": signal,
                "reason": reason,
                "scheduler": words,
                "workers": workers,
            }
        )
        self.launcher.exclude(node)
        self.emit({"type": "node_excluded", "node": node, "reason": f"lost ({signal})"})
        self.say(f"node {node} lost: {reason}; excluded (workers there: {', '.join(workers) or 'none'})")

    def _rejoin(self, node: str, words: str) -> None:
        del self.lost[node]
        self._scheduler_bad.discard(node)
        self.launcher.include(node)
        self.emit({"type": "node_rejoined", "node": node, "scheduler": words})
        self.say(f"node {node} is back ({words}): it takes workers again")
