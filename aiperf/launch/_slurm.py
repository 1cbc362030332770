"""SLURM text, built and read by pure functions: srun command lines, and the output of sinfo, squeue and sacct in
their machine-readable forms.

The srun builder validates option names against :data:`SRUN_OPTIONS` (an unknown one raises :class:`ConfigError`
naming the valid ones), so a typo fails before anything reaches the scheduler. Its argv goes straight to ``execve``
through :mod:`aiperf._proc`, so its elements are the raw values: quoting them would put literal quotes into the job.
``shlex.join(argv)`` is its exact text form, which is what reference files and script bodies hold. The batch script
itself is a file of the repository (``slurm/aiperf.sbatch``), not generated.

Parsers take the exact formats produced by :func:`sinfo_argv`, :func:`squeue_argv` and :func:`sacct_argv`, never the
human-oriented default tables; :func:`node_state` reads the node state column they share with the node-health query
of :mod:`aiperf.launch._health`. The only impure part is :meth:`Allocation.from_env`, which may ask ``squeue`` for
the job's end time through :func:`aiperf._proc.run`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aiperf import _proc
from aiperf.errors import ConfigError, LaunchError

__all__ = [
    "SRUN_OPTIONS",
    "FINISHED_STATES",
    "Allocation",
    "NodeInfo",
    "QueueEntry",
    "AcctRecord",
    "srun_argv",
    "sinfo_argv",
    "squeue_argv",
    "sacct_argv",
    "scancel_argv",
    "node_state",
    "parse_sinfo",
    "parse_squeue",
    "parse_sacct",
    "parse_duration",
    "expand_nodelist",
    "compress_nodelist",
]

OptionValue = str | int | os.PathLike[str] | None


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Long options of srun 22.05 for a job step (or a job of its own).
SRUN_OPTIONS: frozenset[str] = _words(
    """account acctg-freq bcast begin chdir comment constraint container contiguous core-spec cores-per-socket
    cpu-bind cpu-freq cpus-per-gpu cpus-per-task deadline delay-boot dependency distribution epilog error exact
    exclude exclusive export gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket gpus-per-task gres gres-flags
    het-group hint hold immediate input job-name jobid kill-on-bad-exit label licenses mail-type mail-user mem
    mem-bind mem-per-cpu mem-per-gpu mincpus mpi network nice no-allocate no-kill nodefile nodelist nodes ntasks
    ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket open-mode output overcommit overlap
    oversubscribe partition power prolog propagate pty qos quiet quit-on-interrupt reboot relative reservation
    signal slurmd-debug sockets-per-node spread-job switches task-epilog task-prolog thread-spec
    threads-per-core time time-min tmp unbuffered use-min-nodes verbose wait wckey whole"""
)

# Job and step states after which nothing more happens (sacct's long names).
FINISHED_STATES: frozenset[str] = _words(
    """BOOT_FAIL CANCELLED COMPLETED DEADLINE FAILED NODE_FAIL OUT_OF_MEMORY PREEMPTED REVOKED TIMEOUT"""
)

# The field lists the parsers read; the *_argv builders ask for exactly these.
SINFO_FORMAT = "%N|%T|%c|%m|%G"
SQUEUE_FORMAT = "%i|%T|%N|%r"
SACCT_FIELDS = ("JobID", "State", "ExitCode", "NodeList", "Start", "End", "Elapsed")


# ---------------------------------------------------------------------------------------------------------- options
def _option_name(key: str, valid: frozenset[str], what: str) -> str:
    name = key.lstrip("-").replace("_", "-")
    if name not in valid:
        raise ConfigError(f"unknown {what} option {key!r}; valid options: {', '.join(sorted(valid))}")
    return name


def _option_text(name: str, value: object) -> str | None:
    """The option's value as text, '' for a bare flag, or None to leave the option out.

    None and True mean a bare flag (``--exclusive``); False leaves the option out.
    """
    if value is None or value is True:
        return ""
    if value is False:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if not text:
            raise ConfigError(f"option --{name} has an empty value; give a value or leave the option out")
        if "\n" in text or "\r" in text or "\0" in text:
            raise ConfigError(f"option --{name} contains a line break or NUL: {text!r}")
        return text
    raise ConfigError(f"option --{name} must be a string, an integer or None (a flag), got {value!r}")


def _options(options: Mapping[str, OptionValue], valid: frozenset[str], what: str) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    for key, value in options.items():
        name = _option_name(key, valid, what)
        if name in seen:
            raise ConfigError(f"{what} option --{name} is given twice (as {seen[name]!r} and {key!r})")
        seen[name] = key
        text = _option_text(name, value)
        if text is not None:
            out.append((name, text))
    return out


def _flag(name: str, text: str) -> str:
    return f"--{name}" if text == "" else f"--{name}={text}"


# ---------------------------------------------------------------------------------------------------------- builders
def _count(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"srun --{name} must be a positive integer, got {value!r}")
    return value


_SIGNAL_SPEC = re.compile(r"^(?:[RB]{1,2}:)?(?:SIG)?[A-Z0-9]+(?:@\d+)?$")


def srun_argv(
    command: Sequence[str],
    *,
    nodes: int | str | None = None,
    ntasks: int | None = None,
    ntasks_per_node: int | None = None,
    nodelist: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    gpus_per_task: int | None = None,
    gpus_per_node: int | None = None,
    cpus_per_task: int | None = None,
    job_name: str | None = None,
    output: str | os.PathLike[str] | None = None,
    error: str | os.PathLike[str] | None = None,
    exclusive: bool = False,
    overlap: bool = False,
    kill_on_bad_exit: bool | None = None,
    signal: str | None = None,
    time: int | str | None = None,
    export: str | None = None,
    quiet: bool = False,
    extra: Mapping[str, OptionValue] | None = None,
) -> list[str]:
    """``srun [options] -- COMMAND...``: a job step (inside an allocation) or a job of its own.

    Args:
        nodelist, exclude: node names as a SLURM hostlist string or a list of names (compressed for you).
        exclusive: the step gets CPUs of its own (other steps wait for them); overlap: it may share CPUs with
            running steps, which a watchdog or a second step on a busy node needs.
        kill_on_bad_exit: True ends the whole step when one task fails (so a crashed rank does not leave the others
            hanging in a collective); False keeps the others running; None leaves SLURM's default.
        signal: ``[R|B:]SIG[@SECONDS]``, sent that long before the time limit, so a worker can save its state.
        time: a limit in minutes (int) or a SLURM time string (``"1:30:00"``).
        export: ``--export`` value as SLURM takes it (``ALL``, ``NONE``, ``ALL,VAR=value``).
        quiet: ``--quiet``, which also silences "job step queued and waiting" on stderr.
        extra: any other srun long options, validated against :data:`SRUN_OPTIONS` (None or True: a bare flag).

    Elements are raw values for ``execve``; ``shlex.join`` the result to write it into a script.
    """
    if isinstance(command, (str, bytes)):
        raise TypeError(f"command must be a list of arguments, not a string: {command!r}")
    cmd = [os.fspath(c) for c in command]
    if not cmd or not cmd[0]:
        raise ConfigError("srun needs a command to run")
    opts: list[tuple[str, str]] = []

    def add(name: str, value: object) -> None:
        if value is None or value is False:
            return
        text = _option_text(name, value)
        if text is not None:
            opts.append((name, text))

    if isinstance(nodes, str):
        if not re.fullmatch(r"\d+(-\d+)?", nodes):
            raise ConfigError(f"srun --nodes must be a count or a range like '2-4', got {nodes!r}")
    else:
        _count("nodes", nodes)
    add("nodes", nodes)
    add("ntasks", _count("ntasks", ntasks))
    add("ntasks-per-node", _count("ntasks-per-node", ntasks_per_node))
    add("nodelist", _hostlist(nodelist))
    add("exclude", _hostlist(exclude))
    add("gpus-per-task", _count("gpus-per-task", gpus_per_task))
    add("gpus-per-node", _count("gpus-per-node", gpus_per_node))
    add("cpus-per-task", _count("cpus-per-task", cpus_per_task))
    add("job-name", job_name)
    add("output", output)
    add("error", error)
    add("exclusive", exclusive)
    add("overlap", overlap)
    if kill_on_bad_exit is not None:
        add("kill-on-bad-exit", "1" if kill_on_bad_exit else "0")
    if signal is not None and not _SIGNAL_SPEC.match(signal):
        raise ConfigError(f"srun --signal must look like [R|B:]SIG[@SECONDS] (e.g. 'USR1@60'), got {signal!r}")
    add("signal", signal)
    add("time", time)
    add("export", export)
    add("quiet", quiet)
    taken = {name for name, _ in opts}
    for name, text in _options(extra or {}, SRUN_OPTIONS, "srun"):
        if name in taken:
            raise ConfigError(f"srun option --{name} is given both as an argument and in extra")
        opts.append((name, text))
    return ["srun", *(_flag(name, text) for name, text in opts), "--", *cmd]


def _hostlist(nodes: str | Sequence[str] | None) -> str | None:
    if nodes is None:
        return None
    if isinstance(nodes, str):
        try:  # refuse a malformed list here, not in SLURM's error message later
            expand_nodelist(nodes)
        except LaunchError as exc:
            raise ConfigError(f"bad node list {nodes!r}: {exc}") from None
        return nodes
    names = list(nodes)
    return compress_nodelist(names) if names else None


def sinfo_argv() -> list[str]:
    """One line per node (``-N``) in the format :func:`parse_sinfo` reads."""
    return ["sinfo", "--noheader", "-N", "-o", SINFO_FORMAT]


def squeue_argv(job_ids: Iterable[str] = ()) -> list[str]:
    """Queued and running jobs (all users, or just ``job_ids``) in the format :func:`parse_squeue` reads."""
    ids = list(job_ids)
    argv = ["squeue", "--noheader", "-o", SQUEUE_FORMAT]
    return [*argv, "-j", ",".join(ids)] if ids else [*argv, "-a"]


def sacct_argv(job_ids: Iterable[str]) -> list[str]:
    """Accounting records of ``job_ids`` and their steps, in the format :func:`parse_sacct` reads."""
    ids = list(job_ids)
    if not ids:
        raise ConfigError("sacct_argv needs at least one job id")
    return ["sacct", "--parsable2", "--noheader", "--format=" + ",".join(SACCT_FIELDS), "-j", ",".join(ids)]


def scancel_argv(job_id: str, *, step: str | int | None = None, signal: str | None = None) -> list[str]:
    """Cancel (or, with ``signal``, only signal) a job or one of its steps."""
    target = job_id if step is None else f"{job_id}.{step}"
    if not re.fullmatch(r"\d+(_\d+)?(\.(\d+|batch|extern))?", target):
        raise ConfigError(f"not a SLURM job or step id: {target!r}")
    return ["scancel", *([f"--signal={signal}"] if signal else []), target]


# ---------------------------------------------------------------------------------------------------------- parsers
@dataclass(frozen=True)
class NodeInfo:
    """One node as sinfo sees it. ``state`` is the base state (``idle``, ``mixed``, ``down`` ...); the markers
    sinfo appends are split off: ``*`` (not responding) into ``responding``, the power/maintenance ones into
    ``flags``."""

    name: str
    state: str
    responding: bool
    flags: str
    cpus: int
    memory_mb: int
    gres: tuple[str, ...]

    @property
    def gpus(self) -> int:
        """GPUs from the node's gres (``gpu:4``, ``gpu:a100:8(S:0-1)``); 0 without any."""
        total = 0
        for g in self.gres:
            parts = re.sub(r"\(.*?\)", "", g).split(":")
            if parts[0] == "gpu":
                total += int(parts[-1]) if parts[-1].isdigit() else 1
        return total

    @property
    def usable(self) -> bool:
        """Can take work now: responding and idle or partly allocated."""
        return self.responding and self.state in {"idle", "mixed"} and not self.flags


def _int_field(text: str, what: str, line: str) -> int:
    digits = text.strip().rstrip("+")
    if not digits.isdigit():
        raise LaunchError(f"cannot read {what} {text!r} in {line!r}")
    return int(digits)


def _fields(line: str, count: int, what: str) -> list[str]:
    parts = line.split("|")
    if len(parts) != count:
        raise LaunchError(f"{what} line has {len(parts)} fields, expected {count}: {line!r}")
    return parts


def node_state(text: str, line: str) -> tuple[str, bool, str]:
    """sinfo's long state (``%T``) as (base state, responding, other markers): ``down*`` -> ("down", False, "").

    The base state is lower case; ``*`` (not responding) becomes ``responding``, and the power, maintenance and
    reboot markers (``~ # ! % $ @ ^ - +``) are returned as they are. ``line`` is the whole line, for the error.
    """
    m = re.fullmatch(r"([a-z_]+)([*~#!%$@^\-+]*)", text.strip().lower())
    if m is None:
        raise LaunchError(f"cannot read node state {text!r} in {line!r}")
    base, markers = m.groups()
    return base, "*" not in markers, markers.replace("*", "")


def parse_sinfo(text: str) -> list[NodeInfo]:
    """Nodes from ``sinfo --noheader -N -o '%N|%T|%c|%m|%G'``; a node listed in several partitions appears once."""
    nodes: dict[str, NodeInfo] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, state, cpus, memory, gres = _fields(line.strip(), 5, "sinfo")
        base, responding, flags = node_state(state, line)
        nodes.setdefault(
            name,
            NodeInfo(
                name=name,
                state=base,
                responding=responding,
                flags=flags,
                cpus=_int_field(cpus, "CPU count", line),
                memory_mb=_int_field(memory, "memory", line),
                gres=tuple(g for g in _split_top(gres.strip()) if g and g != "(null)"),
            ),
        )
    return list(nodes.values())


@dataclass(frozen=True)
class QueueEntry:
    """A pending or running job from squeue: ``nodes`` is empty while it is pending; ``reason`` is '' for none."""

    job_id: str
    state: str
    nodes: tuple[str, ...]
    reason: str


def parse_squeue(text: str) -> list[QueueEntry]:
    """Jobs from ``squeue --noheader -o '%i|%T|%N|%r'``."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job_id, state, nodes, reason = _fields(line.strip(), 4, "squeue")
        entries.append(
            QueueEntry(
                job_id=job_id.strip(),
                state=_normal_state(state),
                nodes=tuple(expand_nodelist(nodes.strip())),
                reason="" if reason.strip() in {"None", "(null)"} else reason.strip(),
            )
        )
    return entries


@dataclass(frozen=True)
class AcctRecord:
    """One line of sacct: a job (``step`` None) or one of its steps (``"batch"``, ``"extern"``, ``"0"`` ...).

    ``state`` is normalised to the bare upper-case word (``"CANCELLED by 0"`` -> ``CANCELLED``). ``exit_code`` and
    ``signal`` come from sacct's ``CODE:SIGNAL`` (-1 and 0 where sacct gives none: a step lost with its node).
    Times are the scheduler's local times; None where unknown.
    """

    job_id: str
    step: str | None
    state: str
    exit_code: int
    signal: int
    nodes: tuple[str, ...]
    start: datetime | None
    end: datetime | None
    elapsed_s: int | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def id(self) -> str:
        return self.job_id if self.step is None else f"{self.job_id}.{self.step}"


def _normal_state(text: str) -> str:
    word = text.strip().split(" ")[0].rstrip("+").upper()
    if not re.fullmatch(r"[A-Z_]+", word):
        raise LaunchError(f"cannot read job state {text!r}")
    return word


def _timestamp(text: str) -> datetime | None:
    text = text.strip()
    if text in {"", "Unknown", "None", "N/A", "NONE"}:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise LaunchError(f"cannot read SLURM time stamp {text!r}") from None


def parse_sacct(text: str) -> list[AcctRecord]:
    """Jobs and steps from ``sacct --parsable2 --noheader --format=JobID,State,ExitCode,NodeList,Start,End,Elapsed``."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job, state, exit_code, nodes, start, end, elapsed = _fields(line.strip(), len(SACCT_FIELDS), "sacct")
        job_id, _, step = job.strip().partition(".")
        # A step whose node died under it has no exit code at all ("1.2|CANCELLED by 0||n1|..."): -1, unknown.
        code, _, sig = (exit_code.strip() or "-1:0").partition(":")
        if not code.lstrip("-").isdigit() or not (sig or "0").isdigit():
            raise LaunchError(f"cannot read exit code {exit_code!r} in {line!r}")
        records.append(
            AcctRecord(
                job_id=job_id,
                step=step or None,
                state=_normal_state(state),
                exit_code=int(code),
                signal=int(sig or 0),
                nodes=tuple(expand_nodelist(nodes.strip())),
                start=_timestamp(start),
                end=_timestamp(end),
                elapsed_s=parse_duration(elapsed),
            )
        )
    return records


def parse_duration(text: str) -> int | None:
    """Seconds in a SLURM duration (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``, with
    optional fractions of a second as sacct prints them); None for ``UNLIMITED``, ``INVALID`` and the like."""
    text = text.strip()
    if text.upper() in {"", "UNLIMITED", "INFINITE", "INVALID", "NOT_SET", "N/A", "PARTITION_LIMIT", "NONE"}:
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?(?:\.\d+)?", text)
    if m is None:
        raise LaunchError(f"cannot read SLURM duration {text!r}")
    days, a, b, c = m.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        h, mi, s = int(a), int(b or 0), int(c or 0)
    elif c is not None:  # HH:MM:SS
        h, mi, s = int(a), int(b), int(c)
    elif b is not None:  # MM:SS
        h, mi, s = 0, int(a), int(b)
    else:  # MM
        h, mi, s = 0, int(a), 0
    return ((int(days or 0) * 24 + h) * 60 + mi) * 60 + s


# ---------------------------------------------------------------------------------------------------------- hostlists
def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets or parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth < 0:
                raise LaunchError(f"unbalanced brackets in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise LaunchError(f"unbalanced brackets in {text!r}")
    parts.append("".join(current))
    return parts


def _expand_one(name: str, whole: str) -> list[str]:
    m = re.search(r"\[([^\[\]]*)\]", name)
    if m is None:
        if any(c in name for c in "[]") or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise LaunchError(f"malformed node name {name!r} in node list {whole!r}")
        return [name]
    head, tail = name[: m.start()], name[m.end() :]
    out = []
    for part in m.group(1).split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise LaunchError(f"malformed range [{m.group(1)}] in node list {whole!r}")
        width = len(lo) if lo.startswith("0") else 0
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise LaunchError(f"descending range {part!r} in node list {whole!r}")
        for i in range(first, last + 1):
            out += _expand_one(f"{head}{i:0{width}d}{tail}", whole)
    return out


def expand_nodelist(text: str) -> list[str]:
    """``"n[1-3],gpu[07-08]"`` -> ``["n1", "n2", "n3", "gpu07", "gpu08"]``, zero padding kept, order kept.

    Empty text and SLURM's placeholders for "no node" (``(null)``, ``None assigned``) give [].
    """
    text = text.strip()
    if text in {"", "(null)", "None assigned", "None"}:
        return []
    names: list[str] = []
    for part in _split_top(text):
        if not part:
            raise LaunchError(f"empty entry in node list {text!r}")
        names += _expand_one(part, text)
    return names


def compress_nodelist(names: Iterable[str]) -> str:
    """The shortest usual SLURM hostlist for ``names``: ``["n1", "n2", "n3", "gpu07"]`` -> ``"n[1-3],gpu07"``.

    Names that share a prefix before their trailing number are merged; zero-padded numbers only merge with numbers
    of the same width, so :func:`expand_nodelist` gives back exactly the (de-duplicated) names. Groups keep the order
    in which their prefix first appears; numbers are sorted within a group.
    """
    groups: dict[tuple[str, int], set[int]] = {}
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise ConfigError(f"not a node name: {name!r}")
        m = re.fullmatch(r"(.*?)(\d+)", name)
        if m is None:
            groups.setdefault((name, -1), set())
            continue
        prefix, digits = m.groups()
        width = len(digits) if digits.startswith("0") and len(digits) > 1 else 0
        groups.setdefault((prefix, width), set()).add(int(digits))
    # An unpadded number with at least as many digits as a padded group's width prints the same in that group
    # ("gpu10" in "gpu[07-10]"): move it there so the list stays short.
    for (prefix, width), numbers in list(groups.items()):
        if width != 0:
            continue
        for n in sorted(numbers):
            widths = [w for (p, w) in groups if p == prefix and 0 < w <= len(str(n))]
            if widths:
                groups[(prefix, max(widths))].add(n)
                numbers.discard(n)
        if not numbers:
            del groups[(prefix, width)]
    parts = []
    for (prefix, width), numbers in groups.items():
        if width < 0:
            parts.append(prefix)
            continue
        ranges = []
        for lo, hi in _runs(sorted(numbers)):
            a, b = f"{lo:0{width}d}", f"{hi:0{width}d}"
            ranges.append(a if lo == hi else f"{a}-{b}")
        parts.append(
            f"{prefix}{ranges[0]}" if len(ranges) == 1 and "-" not in ranges[0] else f"{prefix}[{','.join(ranges)}]"
        )
    return ",".join(parts)


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


# ---------------------------------------------------------------------------------------------------------- allocation
def _env_int(environ: Mapping[str, str], *names: str) -> int | None:
    """The first of ``names`` that is set, as an int; a GPU count like ``a100:4`` gives 4."""
    for name in names:
        value = environ.get(name, "").strip()
        if not value:
            continue
        # SLURM_GPUS_PER_NODE may be "type:count"; *_PER_NODE values may read "2(x3)" for heterogeneous nodes.
        m = re.fullmatch(r"(?:[A-Za-z0-9_\-]+:)*(\d+)(?:\(x\d+\))?(?:,.*)?", value)
        if m is None:
            raise LaunchError(f"cannot read {name}={value!r} from the SLURM environment")
        return int(m.group(1))
    return None


@dataclass(frozen=True)
class Allocation:
    """The SLURM allocation this process runs in, as its environment describes it.

    ``end_time`` is the job's end as Unix time (None when the job has no time limit): the benchmark's deadline
    follows from it, minus a margin for writing the report. ``gpus_per_node`` and ``cpus_on_node`` describe this
    node; SLURM gives every node of a homogeneous job the same.
    """

    job_id: str
    nodes: tuple[str, ...]
    gpus_per_node: int
    cpus_on_node: int | None
    ntasks_per_node: int | None
    end_time: float | None

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until the time limit (None without one); ``now`` defaults to the current Unix time."""
        if self.end_time is None:
            return None
        return self.end_time - (time.time() if now is None else now)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, timeout: float = 30.0) -> Allocation:
        """Read the allocation from ``environ`` (default: this process's environment).

        The end time comes from ``SLURM_JOB_END_TIME`` (Unix time) when set, else from
        ``squeue -h -j $SLURM_JOB_ID -o %e``, run through :func:`aiperf._proc.run` with ``timeout``.

        Raises:
            LaunchError: not inside an allocation (no ``SLURM_JOB_ID``), an inconsistent environment, or squeue
                failing; a missing end time is an error rather than "no deadline", since a benchmark that ignored
                the time limit would be killed before writing its report.
        """
        env = os.environ if environ is None else environ
        job_id = env.get("SLURM_JOB_ID", "").strip() or env.get("SLURM_JOBID", "").strip()
        if not job_id:
            raise LaunchError(
                "not inside a SLURM allocation (SLURM_JOB_ID is not set): start this under sbatch or salloc"
            )
        nodelist = env.get("SLURM_JOB_NODELIST", "") or env.get("SLURM_NODELIST", "")
        nodes = tuple(expand_nodelist(nodelist))
        if not nodes:
            raise LaunchError(f"SLURM job {job_id}: SLURM_JOB_NODELIST is empty or unset")
        num_nodes = _env_int(env, "SLURM_JOB_NUM_NODES", "SLURM_NNODES")
        if num_nodes is not None and num_nodes != len(nodes):
            raise LaunchError(
                f"SLURM job {job_id}: SLURM_JOB_NUM_NODES={num_nodes} but SLURM_JOB_NODELIST names {len(nodes)} nodes"
            )
        end_text = env.get("SLURM_JOB_END_TIME", "").strip()
        if end_text:
            if not end_text.isdigit():
                raise LaunchError(f"cannot read SLURM_JOB_END_TIME={end_text!r}")
            end_time: float | None = float(end_text)
        else:
            end_time = _squeue_end_time(job_id, timeout)
        return cls(
            job_id=job_id,
            nodes=nodes,
            gpus_per_node=_env_int(env, "SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE") or 0,
            cpus_on_node=_env_int(env, "SLURM_CPUS_ON_NODE"),
            ntasks_per_node=_env_int(env, "SLURM_NTASKS_PER_NODE"),
            end_time=end_time,
        )


def _squeue_end_time(job_id: str, timeout: float) -> float | None:
    out = _proc.run(["squeue", "-h", "-j", job_id, "-o", "%e"], timeout=timeout).stdout.strip()
    if not out:
        raise LaunchError(f"squeue does not know job {job_id}, so its time limit is unknown")
    stamp = _timestamp(out.splitlines()[0])
    return None if stamp is None else stamp.timestamp()
