"""submitit launcher: the workers as a SLURM job array submitted from a login node, one single-node job (array task)
per worker, for sites that prefer many small jobs to one allocation (or whose policy forbids long multi-node
allocations).

The master runs where ``aiperf run --launcher submitit`` is started (a login node) and needs no allocation. Each
worker is a job of ``submitit.AutoExecutor(folder=<experiment>/submitit, cluster="slurm")`` pinned to its node; the
job runs exactly the local launcher's command line (``python -m aiperf worker DIR --worker-id ID``) through
``submitit.helpers.CommandFunction``, so submitit pickles only that small command object and the worker reads
everything else from the experiment directory.

The first workers go out as one job array (:meth:`SubmititLauncher.start_many`; one per shape of job, in arrays of
at most :data:`ARRAY_MAX` tasks). SLURM has no per-task ``--nodelist``, so the array is submitted held, each task is
pinned to its worker's node and named after it with ``scontrol update`` (which splits a pending task off its
array; it keeps its ``ARRAY_TASK`` id), and the array is then released. Should that fail, the array is cancelled and
the workers are submitted one job each. A restarted worker is a job of its own (:meth:`SubmititLauncher.start`).

Pickle, the one stated exception to aiperf's rule of no pickle on the shared filesystem: submitit always pickles the
submitted callable (``<job>_submitted.pkl``, here the ``CommandFunction`` holding the command line above), written
by the master into ``<experiment>/submitit/`` and unpickled by submitit on the node; that cannot be avoided while
using submitit. The other direction is closed: the master never unpickles anything a job wrote (its
``<job>_result.pkl`` is never read; ``job.result()`` is not called, and tests/test_audit.py flags such calls). Job
states come from ``sacct``, a probe's record from the job's log. The default launcher (``sbatch
slurm/aiperf.sbatch``, :mod:`aiperf.launch._srun`) uses no pickle at all.

Probing: one short job per node runs ``aiperf probe --json``, before any worker. The probe then measures each node
the same way the SLURM-step launcher does, on an idle node, and a node that cannot run a job is known (and
excluded) before the window opens; the price is one more trip through the queue (seconds on an idle cluster). The
probe's JSON line is read from the job's log (``<job>_0_log.out``, as :func:`aiperf.launch._srun.probe_event`
reads an srun probe's output).

Job states come from one batched ``sacct`` call for all workers (at most every few seconds), read by
:func:`aiperf.launch.parse_sacct`; submitit's own watcher backs off to a minute between calls, too slow to notice a
dead worker. So the site needs SLURM accounting (slurmdbd), which submitit needs anyway.

Site settings (partition, account, memory, time limit ...) are submitit parameters given as a JSON object in
``AIPERF_SUBMITIT`` (e.g. ``{"slurm_partition": "gpu", "gpus_per_node": 8, "mem_gb": 400}``); submitit checks
their names. Nodes are ``[run] hosts`` when given, else the first ``[run] workers`` usable nodes sinfo lists (in
the chosen partition).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf import _proc
from aiperf.errors import ConfigError, LaunchError
from aiperf.launch._base import Launcher, WorkerHandle, WorkerSpec, worker_argv
from aiperf.launch._slurm import (
    FINISHED_STATES,
    AcctRecord,
    parse_sacct,
    parse_sinfo,
    parse_squeue,
    sacct_argv,
    scancel_argv,
    sinfo_argv,
    squeue_argv,
)
from aiperf.launch._srun import _last_line, probe_event

if TYPE_CHECKING:
    from aiperf.config import Config

__all__ = ["SubmititLauncher", "SubmititWorker", "exit_status", "submitit_parameters"]

ENV_PARAMETERS = "AIPERF_SUBMITIT"
PROBE_TIMEOUT_S = 900.0  # queueing included
ARRAY_MAX = 1000  # tasks per job array: SLURM's default MaxArraySize (1001) allows indices 0..1000
_SACCT_EVERY_S = 3.0
_COMMAND_TIMEOUT_S = 30.0
WAITING_NOTE_S = 30.0  # a probe job still queued is named, with SLURM's reason, this often
_LOG_SETTLE_S = 5.0  # how long a finished probe job's log may take to appear in full on a shared filesystem
_UNSET = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT", "AIPERF_NODE", "TORCHELASTIC_RUN_ID")


def exit_status(record: AcctRecord) -> int | None:
    """A worker's exit status from its job's sacct record: None while the job is not finished, 0 when it completed,
    the exit code of a failed job, and minus a signal number for a job SLURM ended (cancelled, timed out, node lost)."""
    if record.state not in FINISHED_STATES:
        return None
    if record.state == "COMPLETED":
        return record.exit_code
    if record.state == "FAILED":
        return record.exit_code or (-record.signal if record.signal else 1)
    if record.state in {"NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY"}:
        return -9
    return -(record.signal or 15)  # CANCELLED, TIMEOUT, PREEMPTED, DEADLINE, REVOKED


def _link_log(link: Path, target: Path) -> None:
    """Point ``logs/<worker>.log`` at the current job's output (relative, so the experiment directory can move);
    a real file there is left alone."""
    if link.exists() and not link.is_symlink():
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(target, link.parent))
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def submitit_parameters(environ: Mapping[str, str]) -> dict[str, Any]:
    """The site's submitit parameters from ``AIPERF_SUBMITIT`` (a JSON object); {} when unset."""
    text = environ.get(ENV_PARAMETERS, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{ENV_PARAMETERS} is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f'{ENV_PARAMETERS} must be a JSON object such as {{"slurm_partition": "gpu"}}')
    return value


def _setup_lines(threads: int) -> list[str]:
    """Shell lines the job runs before its tasks start (submitit's ``slurm_setup``)."""
    lines = [
        f"unset {' '.join(_UNSET)}",
        "export PYTHONUNBUFFERED=1",
        "export MASTER_ADDR=127.0.0.1",  # a worker job spans one node: its ranks meet on loopback
    ]
    if threads:
        lines += [f"export OMP_NUM_THREADS={threads}", f"export AIPERF_THREADS={threads}"]
    return lines


class SubmititWorker(WorkerHandle):
    """One worker as a submitit job."""

    def __init__(self, launcher: SubmititLauncher, spec: WorkerSpec, job: Any) -> None:
        self.worker_id = spec.worker_id
        self.node = spec.node
        self.job = job
        self._launcher = launcher

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def poll(self) -> int | None:
        return self._launcher.exit_status(self.job_id)

    def terminate(self) -> None:
        """``job.cancel()``: SLURM sends SIGTERM to every rank, then SIGKILL after its KillWait."""
        if self.poll() is None:
            self.job.cancel(check=False)

    def kill(self) -> None:
        if self.poll() is None:
            self.job.cancel(check=False)
            _proc.run(scancel_argv(self.job_id, signal="KILL"), timeout=_COMMAND_TIMEOUT_S, check=False)

    def describe(self) -> str:
        return f"submitit job {self.job_id} on {self.node}"


class SubmititLauncher(Launcher):
    """Every worker a job of its own, submitted with submitit.

    Args:
        config: the experiment's config (``[run]`` workers, ranks, threads, duration, hosts).
        experiment: the experiment directory (on the shared filesystem); submitit's files go to its ``submitit/``.
        parameters: submitit parameters (default: ``AIPERF_SUBMITIT`` from the environment), applied last.
        nodes: the nodes to place workers on (default: ``[run] hosts``, else the first usable ones from sinfo).
    """

    name = "submitit"
    reprobe = False  # every probe is a queued job; one before the window is enough

    def __init__(
        self,
        config: Config,
        experiment: Path | str,
        *,
        parameters: Mapping[str, Any] | None = None,
        nodes: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        try:
            import submitit
        except ImportError:
            raise LaunchError("launcher 'submitit' needs submitit: pip install 'aiperf[slurm]'") from None
        self._submitit = submitit
        self.config = config
        self.folder = Path(experiment).absolute() / "submitit"
        env = os.environ if environ is None else environ
        self.parameters = dict(submitit_parameters(env) if parameters is None else parameters)
        self._cpus: dict[str, int] = {}
        self._nodes = list(nodes) if nodes is not None else self._pick_nodes()
        if not self._nodes:
            raise LaunchError("no usable SLURM node for submitit workers: sinfo lists none idle (set [run] hosts)")
        self._excluded: list[str] = []
        self._states: dict[str, int | None] = {}
        self._sacct_at = float("-inf")
        self.probe_failures: dict[str, str] = {}

    # -- placement -----------------------------------------------------------------------------------------------
    def _pick_nodes(self) -> list[str]:
        argv = sinfo_argv()
        partition = self.parameters.get("slurm_partition")
        if partition:
            argv += ["-p", str(partition)]
        infos = parse_sinfo(_proc.run(argv, timeout=_COMMAND_TIMEOUT_S).stdout)
        self._cpus = {n.name: n.cpus for n in infos}
        hosts = [h.split(":")[0] for h in self.config.run.hosts]
        if hosts:
            unknown = [h for h in hosts if h not in self._cpus]
            if unknown:
                raise ConfigError(f"[run] hosts names nodes sinfo does not list: {', '.join(unknown)}")
            return hosts
        return [n.name for n in infos if n.usable][: self.config.run.workers]

    def nodes(self) -> Sequence[str]:
        return [n for n in self._nodes if n not in self._excluded]

    def exclude(self, node: str) -> None:
        if node not in self._excluded:
            self._excluded.append(node)

    def _ranks_and_threads(self, spec: WorkerSpec | None, node: str) -> tuple[int, int]:
        gpus = int(self.parameters.get("gpus_per_node", 0) or 0)
        ranks = gpus or (spec.ranks if spec is not None else 1)
        threads = spec.threads_per_rank if spec is not None else 0
        if not threads:
            threads = int(self.parameters.get("cpus_per_task", 0) or 0) or max(1, self._cpus.get(node, 1) // ranks)
        return ranks, threads

    def executor(self, name: str, node: str | None, ranks: int, threads: int, minutes: int, *, array: int = 0) -> Any:
        """A submitit executor for one job on ``node``, or (``array`` > 0) for a held job array of that many
        single-node tasks, each pinned later (:meth:`_place_array`); the site's parameters come last and win."""
        executor = self._submitit.AutoExecutor(folder=self.folder, cluster="slurm")
        params: dict[str, Any] = {
            "name": name,
            "nodes": 1,
            "tasks_per_node": ranks,
            "cpus_per_task": threads,
            "timeout_min": minutes,
            "slurm_setup": _setup_lines(threads),
            "stderr_to_stdout": True,  # one log per job, as logs/<worker>.log links to it
        }
        if node is not None:
            params["slurm_nodelist"] = node
        if array:
            params["slurm_array_parallelism"] = array  # every task at once (submitit's default caps at 256)
        params.update(self.parameters)
        if "slurm_setup" in self.parameters:  # the site's lines first (modules, venvs), then ours
            params["slurm_setup"] = [*self.parameters["slurm_setup"], *_setup_lines(threads)]
        if array:  # held until every task is placed; the site's extra sbatch options are kept
            params["slurm_additional_parameters"] = {**params.get("slurm_additional_parameters", {}), "hold": True}
        try:
            executor.update_parameters(**params)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad submitit parameter in {ENV_PARAMETERS}: {str(exc).splitlines()[0]}") from None
        return executor

    def _submit(self, executor: Any, command: list[str]) -> Any:
        try:
            return executor.submit(self._submitit.helpers.CommandFunction(command, verbose=True))
        except Exception as exc:  # submitit raises plain exceptions for sbatch failures
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LaunchError(f"submitit could not submit {command[-1]}: {first}") from None

    # -- workers -------------------------------------------------------------------------------------------------
    def _minutes(self) -> int:
        return math.ceil(self.config.run.duration_s / 60) + 10  # start-up, the window, the stop

    def _adopt(self, spec: WorkerSpec, job: Any) -> SubmititWorker:
        self._states[str(job.job_id)] = None
        if spec.log is not None:
            _link_log(spec.log, Path(job.paths.stdout))
        return SubmititWorker(self, spec, job)

    def start(self, spec: WorkerSpec) -> WorkerHandle:
        """One worker as a job of its own, pinned to its node (a restart, or a worker alone in its shape)."""
        node = spec.node or self.nodes()[0]
        ranks, threads = self._ranks_and_threads(spec, node)
        executor = self.executor(f"aiperf-{spec.worker_id}", node, ranks, threads, self._minutes())
        return self._adopt(spec, self._submit(executor, worker_argv(spec)))

    def start_many(self, specs: Sequence[WorkerSpec]) -> list[WorkerHandle]:
        """The first workers as job arrays: one per shape (ranks and threads, which follow from a node's CPUs), in
        arrays of at most :data:`ARRAY_MAX` tasks, each task pinned to its worker's node. A worker alone in its
        shape is a plain job; an array that cannot be placed is cancelled and its workers go one job each."""
        placed = [(spec, spec.node or self.nodes()[0]) for spec in specs]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, (spec, node) in enumerate(placed):
            groups.setdefault(self._ranks_and_threads(spec, node), []).append(index)
        handles: dict[int, WorkerHandle] = {}
        try:
            for (ranks, threads), members in groups.items():
                for first in range(0, len(members), ARRAY_MAX):
                    chunk = members[first : first + ARRAY_MAX]
                    jobs = self._start_array([placed[i] for i in chunk], ranks, threads) if len(chunk) > 1 else None
                    for position, index in enumerate(chunk):
                        spec = placed[index][0]
                        handles[index] = self._adopt(spec, jobs[position]) if jobs else self.start(spec)
        except BaseException:
            for handle in handles.values():  # the caller never sees these: stop them rather than leave them queued
                handle.kill()
            raise
        return [handles[i] for i in range(len(placed))]

    def _start_array(self, placed: list[tuple[WorkerSpec, str]], ranks: int, threads: int) -> list[Any] | None:
        """Submit one held array for ``placed`` (spec, node), pin and name every task, release it: its jobs in
        order (ids ``ARRAY_TASK``), or None when the array could not be placed (it is then cancelled)."""
        executor = self.executor("aiperf-workers", None, ranks, threads, self._minutes(), array=len(placed))
        commands = [self._submitit.helpers.CommandFunction(worker_argv(spec), verbose=True) for spec, _ in placed]
        try:
            jobs = list(executor.submit_array(commands))
        except Exception as exc:  # submitit raises plain exceptions for sbatch failures
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LaunchError(f"submitit could not submit the workers' job array: {first}") from None
        array_id = str(jobs[0].job_id).partition("_")[0]
        try:
            tasks = [(str(job.job_id), spec, node) for job, (spec, node) in zip(jobs, placed, strict=True)]
            self._place_array(array_id, tasks)
        except LaunchError as exc:
            _proc.run(scancel_argv(array_id), timeout=_COMMAND_TIMEOUT_S, check=False)
            print(
                f"aiperf: job array {array_id} could not be placed ({exc}); submitting one job per worker",
                file=sys.stderr,
                flush=True,
            )
            return None
        return jobs

    def _place_array(self, array_id: str, tasks: list[tuple[str, WorkerSpec, str]]) -> None:
        """Pin each held task (``ARRAY_TASK``) to its node and name it after its worker, then release the array."""
        for task_id, spec, node in tasks:
            argv = ["scontrol", "update", f"JobId={task_id}", f"JobName=aiperf-{spec.worker_id}", f"ReqNodeList={node}"]
            _proc.run(argv, timeout=_COMMAND_TIMEOUT_S)
        _proc.run(["scontrol", "release", array_id], timeout=_COMMAND_TIMEOUT_S)

    def exit_status(self, job_id: str) -> int | None:
        """The job's exit status once sacct reports it finished, else None (one sacct for all jobs, throttled)."""
        if self._states.get(job_id) is None and time.monotonic() - self._sacct_at >= _SACCT_EVERY_S:
            self._refresh()
        return self._states.get(job_id)

    def _refresh(self) -> None:
        self._sacct_at = time.monotonic()
        pending = [j for j, code in self._states.items() if code is None]
        if not pending:
            return
        try:
            records = parse_sacct(_proc.run(sacct_argv(pending), timeout=_COMMAND_TIMEOUT_S).stdout)
        except LaunchError:
            return  # slurmdbd busy: ask again next time
        for record in records:
            if record.step is None and record.job_id in self._states:
                self._states[record.job_id] = exit_status(record)

    def _queue_reason(self, job_id: str) -> str | None:
        """``PENDING (Resources)``: the job's state and SLURM's reason while it is queued, else None."""
        try:
            entries = parse_squeue(_proc.run(squeue_argv([job_id]), timeout=_COMMAND_TIMEOUT_S).stdout)
        except LaunchError:
            return None
        entry = next((e for e in entries if e.job_id == job_id), None)
        if entry is None or entry.state == "RUNNING":
            return None
        return f"{entry.state} ({entry.reason})" if entry.reason else entry.state

    def waiting_reason(self, handle: WorkerHandle) -> str | None:
        job_id = getattr(handle, "job_id", None)
        return self._queue_reason(str(job_id)) if job_id is not None else None

    # -- probing -------------------------------------------------------------------------------------------------
    def probe(self, precision: str, device: str) -> list[dict[str, Any]]:
        """One short job per node running ``aiperf probe --json``; a node whose probe fails is excluded.

        Raises:
            LaunchError: no node could be probed.
        """
        jobs: list[tuple[str, Any]] = []
        for node in self.nodes():
            _, threads = self._ranks_and_threads(None, node)
            executor = self.executor(f"aiperf-probe-{node}", node, 1, threads, 15)
            command = [sys.executable, "-m", "aiperf", "probe", "--json", "--precision", precision, "--device", device]
            job = self._submit(executor, command)
            self._states[str(job.job_id)] = None
            jobs.append((node, job))
        limit = time.monotonic() + PROBE_TIMEOUT_S
        events: list[dict[str, Any]] = []
        for node, job in jobs:
            job_id = str(job.job_id)
            code = None
            ended = False
            next_note = time.monotonic() + WAITING_NOTE_S
            while not ended and time.monotonic() < limit:
                if time.monotonic() >= next_note:
                    next_note = time.monotonic() + WAITING_NOTE_S
                    why = self._queue_reason(job_id) or "running"
                    print(f"aiperf: waiting for probe job {job_id} on {node}: {why}", file=sys.stderr, flush=True)
                code = self.exit_status(job_id)
                # submitit writes its result file as the task ends: its existence says so sooner than sacct. Only
                # that is looked at; the file is a pickle and is never read (job.result() would unpickle it).
                ended = code is not None or job.paths.result_pickle.exists()
                if not ended:
                    time.sleep(0.5)
            if not ended:
                job.cancel(check=False)
                self.probe_failures[node] = f"job {job_id} did not finish within {PROBE_TIMEOUT_S:.0f} s"
                continue
            stdout = Path(job.paths.stdout)
            text = _read_text(stdout)
            # The log may show up late on a shared filesystem: give a job that did not fail a few seconds more.
            settle = time.monotonic() + _LOG_SETTLE_S
            while probe_event(text) is None and code in (None, 0) and time.monotonic() < settle:
                time.sleep(0.5)
                text = _read_text(stdout)
            event = probe_event(text)
            if event is None or code not in (None, 0):
                status = "?" if code is None else code
                last = _last_line(text) or f"no output in {stdout}"
                why = "failed" if code not in (None, 0) else "printed no probe record"
                self.probe_failures[node] = f"job {job_id} {why} (status {status}): {last}"
                continue
            event["node"] = node
            events.append(event)
        for node, reason in self.probe_failures.items():
            self.exclude(node)
            print(f"aiperf: node {node} excluded, its probe failed: {reason}", file=sys.stderr, flush=True)
        if not events:
            first = next(iter(self.probe_failures.items()), ("?", "no nodes"))
            raise LaunchError(f"no node could be probed (node {first[0]}: {first[1]})")
        return events
