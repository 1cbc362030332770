"""aiperf: an AutoML benchmark that ranks AI clusters by the AI compute they sustain.

The ``aiperf`` command line.

Every subcommand is a thin layer over library functions. An :class:`~aiperf.errors.AiperfError` becomes one line on
stderr (``aiperf: error: ...``) and exit status 2; this module is the only place that exits the process. The exit
statuses are defined once in :mod:`aiperf.errors` (0 valid, 3 finished but not valid, 4 interrupted, 2 usage).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiperf import __version__
from aiperf.datasets import checkable_datasets, dataset_entries, dataset_names
from aiperf.errors import EXIT_INTERRUPTED, EXIT_NOT_VALID, EXIT_OK, EXIT_USAGE, AiperfError
from aiperf.precision import PRECISIONS

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _cmd_arch(args: argparse.Namespace) -> int:
    """Load an architecture (aiperf or NNI JSON, or a seed name) and print its summary."""
    from aiperf import flops
    from aiperf.arch import SEEDS, load_file, seed

    source: str = args.source
    if source in SEEDS:
        c, h, w = args.input_shape
        graph = seed(source, (c, h, w), args.num_classes)
    else:
        graph = load_file(source)
    if args.json:
        print(json.dumps(graph.canonical().to_json(), indent=1))
        return 0
    fwd = flops.forward_flops(graph)
    print(f"layers            {len(graph)}")
    print(f"input (C, H, W)   {list(graph.input_shape)}")
    print(f"classes           {graph.num_classes}")
    print(f"parameters        {graph.num_params():,}")
    print(f"forward FLOPs     {fwd:,} per image ({fwd / 2e9:.3f} GMACs)")
    print(f"training FLOPs    {flops.training_flops(graph):,} per image")
    print(f"hash              {graph.content_hash()}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """Run the benchmark: a new experiment, or ``--resume DIR``."""
    from aiperf.config import load_config
    from aiperf.master import run_experiment

    if args.resume:
        given = [flag for flag, value in _run_overrides(args).items() if value is not None]
        if given or args.config:
            raise AiperfError(f"--resume continues an experiment with its saved config; drop {given or ['--config']}")
        result = run_experiment(resume=Path(args.resume))
    else:
        result = run_experiment(load_config(args.config, _run_overrides(args)))
    return run_exit_status(result)


def run_exit_status(result: Any) -> int:
    """The exit status of ``aiperf run`` for its final :class:`~aiperf.report.Result`.

    Interrupted comes first: a run stopped by a signal, or whose master died (``interrupted``), or that ended
    before its deadline is reported as such even though it is also not valid, so a script can tell "try again"
    from "the cluster did not make it".
    """
    reason = result.end_reason or ""
    if result.status != "finished" or reason.startswith("interrupted") or reason == "stopped early":
        return EXIT_INTERRUPTED
    return EXIT_OK if result.valid else EXIT_NOT_VALID


def _run_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        "run.duration": args.duration,
        "run.workers": args.workers,
        "run.launcher": args.launcher,
        "run.seed": args.seed,
        "run.experiment_dir": args.experiment_dir,
        "dataset.name": args.dataset,
        "dataset.path": args.data_path,
        "train.precision": args.precision,
        "train.device": args.device,
        "run.hosts": [h.strip() for h in args.hosts.split(",") if h.strip()] if args.hosts else None,
    }


def _cmd_worker(args: argparse.Namespace) -> int:
    """One worker rank (started by a launcher; not usually run by hand)."""
    from aiperf.worker import run_worker

    if args.worker_id == "master":
        raise AiperfError("worker id 'master' is reserved for the master's journal: choose another --worker-id")
    return run_worker(Path(args.experiment), args.worker_id)


def _cmd_report(args: argparse.Namespace) -> int:
    """Recompute and rewrite the report of an experiment directory (running or finished)."""
    from aiperf.paths import ExperimentPaths
    from aiperf.report import analyze, format_summary, write_report

    paths = ExperimentPaths(Path(args.experiment)).require()
    result = analyze(paths)
    write_report(result, paths)
    print(format_summary(result))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    """Show how an experiment is going."""
    from aiperf.paths import ExperimentPaths
    from aiperf.report import analyze, format_status

    print(format_status(analyze(ExperimentPaths(Path(args.experiment)).require())))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    """Check an experiment's hash chains and journal digests, and recompute its result: 0 verified, 1 not."""
    from aiperf.verify import format_verify, verify_experiment

    report = verify_experiment(Path(args.experiment))
    print(format_verify(report))
    return 0 if report.ok else 1


def _cmd_audit(args: argparse.Namespace) -> int:
    """Re-execute a random sample of finished trials and compare them with their journals: 0 passed, 1 not."""
    from aiperf.audit import audit_experiment, format_audit

    report = audit_experiment(Path(args.experiment), trials=args.trials, seed=args.seed, threads=args.threads)
    print(format_audit(report))
    return 0 if report.passed else 1


def _cmd_probe(args: argparse.Namespace) -> int:
    """Measure this node's dense GEMM peak."""
    from aiperf.probe import probe_node

    result = probe_node(args.precision, args.device, seconds=args.seconds)
    if args.json:
        print(json.dumps(result.to_event()))
    else:
        print(f"{result.node}: {result.device_name} x{result.devices}, {result.threads} threads")
        print(f"dense GEMM peak ({result.precision}): {result.peak_flops / 1e9:,.1f} GFLOP/s")
        spec = "none"
        if result.spec_peak_flops:
            spec = f"{result.spec_peak_flops / 1e9:,.1f} GFLOP/s, {result.spec_source}"
        print(f"spec peak: {spec}; {result.spec_note}" + ("  [FLAGGED]" if result.above_spec else ""))
    if args.data:
        from aiperf.datasets import measure_read

        speed = measure_read(args.data, image_size=args.image_size, images=args.read_images, workers=args.read_workers)
        print(_per_core_line(speed.images_per_core_s, f"imagenet at {args.data}, {args.image_size} px training reads"))
    return 0


def _per_core_line(per_core: float, what: str, wanted: float = 10_000.0) -> str:
    """The loader's images/s per CPU core and the cores a GPU wanting ``wanted`` images/s would need."""
    cores = wanted / per_core if per_core > 0 else float("inf")
    return (
        f"loader      {per_core:,.0f} images/s per CPU core ({what}); {wanted:,.0f} images/s needs ~{cores:,.0f} cores"
    )


def _cmd_data(args: argparse.Namespace) -> int:
    """``aiperf data check|prepare``: a dataset against its rules, or a faster-loading copy of ImageNet."""
    from aiperf.datasets import check_dataset, format_check

    if args.data_command == "check":
        report = check_dataset(args.name, args.path, full=args.full, jobs=args.jobs)
        print(json.dumps(report.to_json(), indent=1) if args.json else format_check(report, show=args.show))
        return 0 if report.ok else 1
    return _prepare_data(args)


def _prepare_data(args: argparse.Namespace) -> int:
    """Write the resized copy, then time one epoch's read of the source and of the copy, side by side."""
    from aiperf.datasets import compare_reads, prepare_imagenet

    if args.name != "imagenet":
        raise AiperfError(f"prepare is for imagenet only: {args.name} is read into memory whole, nothing to gain")
    shown = [-1]

    def progress(done: int, total: int) -> None:
        percent = 100 * done // max(1, total)
        if percent >= shown[0] + 5 or done == total:
            shown[0] = percent
            print(f"prepare: {done:,}/{total:,} files ({percent}%)", file=sys.stderr, flush=True)

    report = prepare_imagenet(
        args.path,
        args.out,
        short_side=args.short_side,
        image_size=args.image_size,
        quality=args.quality,
        jobs=args.jobs,
        progress=progress,
    )
    ratio = report.bytes_out / report.bytes_in if report.bytes_in else 1.0
    print(f"copy        {report.out} (shorter side {report.short_side}, JPEG quality {report.quality})")
    print(f"files       {report.files:,}: {report.resized:,} resized, {report.copied:,} copied as they were, "
          f"{report.skipped:,} already there, {len(report.failed):,} undecodable (copied as they were)")  # fmt: skip
    if report.bytes_in:
        print(f"bytes       {report.bytes_in / 1e6:,.1f} MB -> {report.bytes_out / 1e6:,.1f} MB ({ratio:.0%}) in "
              f"{report.seconds:.1f} s")  # fmt: skip
    for path, reason in report.failed[: args.show]:
        print(f"undecodable {path}: {reason}")
    if args.measure_images < 0:
        return 0
    import torch

    torch.set_num_threads(1)  # decoding is what is measured; one thread per reading process, as in training
    source, copy = compare_reads(
        [report.source, report.out],
        repeats=2,
        image_size=args.image_size,
        images=args.measure_images,
        workers=args.read_workers,
    )
    print(f"read        {source.images:,} training images as training reads them, {args.read_workers} loader "
          "worker(s), best of 2 interleaved reads:")  # fmt: skip
    for label, speed in (("source", source), ("copy", copy)):
        print(f"  {label:<9} {speed.images_per_s:,.0f} images/s ({speed.seconds:.2f} s, {speed.cpu_seconds:.2f} s of "
              f"CPU for {speed.images:,} images of {speed.bytes / 1e6:,.1f} MB)")  # fmt: skip
    print(f"speed-up    {source.seconds / copy.seconds:.2f}x faster to read on this machine "
          f"({source.cpu_seconds / max(copy.cpu_seconds, 1e-9):.2f}x less CPU per image)")  # fmt: skip
    print(_per_core_line(source.images_per_core_s, "source"))
    print(_per_core_line(copy.images_per_core_s, "copy"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiperf", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"aiperf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the benchmark (no arguments: the embedded default, a short digits run)")
    run.add_argument("--config", type=Path, help="TOML config file (see aiperf/config.py for every key)")
    run.add_argument("--duration", help="benchmark window, e.g. 90s, 30m, 2h")
    run.add_argument("--workers", type=int, help="number of workers (one per node on a cluster)")
    run.add_argument("--dataset", help=" | ".join(dataset_names()))
    folders = ", ".join(e.name for e in dataset_entries() if e.needs_path)
    run.add_argument("--data-path", help=f"folder of the dataset ({folders})")
    run.add_argument("--precision", help=" | ".join(PRECISIONS))
    run.add_argument("--device", help="auto | cpu | cuda")
    run.add_argument("--launcher", help="local | slurm | submitit | mpi")
    run.add_argument("--hosts", help="hosts of the mpi launcher, comma-separated: n1,n2 or n1:4,n2:4 (ranks each)")
    run.add_argument("--seed", type=int, help="search seed")
    run.add_argument("--experiment-dir", help="where the experiment goes (default: reports/<dataset>-<time>)")
    run.add_argument("--resume", metavar="DIR", help="continue the interrupted experiment in DIR")
    run.set_defaults(handler=_cmd_run)

    worker = sub.add_parser("worker", help="run one worker rank of an experiment (launchers start these)")
    worker.add_argument("experiment", help="experiment directory")
    worker.add_argument("--worker-id", required=True)
    worker.set_defaults(handler=_cmd_worker)

    report = sub.add_parser("report", help="(re)write report.html, result.json and summary.txt of an experiment")
    report.add_argument("experiment", help="experiment directory")
    report.set_defaults(handler=_cmd_report)

    status = sub.add_parser("status", help="show how an experiment is going")
    status.add_argument("experiment", help="experiment directory")
    status.set_defaults(handler=_cmd_status)

    verify = sub.add_parser(
        "verify", help="check an experiment's journals (hash chains, digests) and recompute its result.json"
    )
    verify.add_argument("experiment", help="experiment directory")
    verify.set_defaults(handler=_cmd_verify)

    audit = sub.add_parser(
        "audit", help="re-train a random sample of an experiment's trials and compare them with their journals"
    )
    audit.add_argument("experiment", help="experiment directory")
    audit.add_argument("--trials", type=int, default=3, help="finished trials to re-execute (default 3)")
    audit.add_argument("--seed", type=int, help="seed of the random pick (printed; default: a fresh one)")
    audit.add_argument("--threads", type=int, help="threads per re-run (default: what the worker used)")
    audit.set_defaults(handler=_cmd_audit)

    probe = sub.add_parser("probe", help="measure this node's dense GEMM peak")
    probe.add_argument("--precision", default="bf16", choices=PRECISIONS)
    probe.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    probe.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="total length of the timed matmul bursts (5 of them; the median counts)",
    )
    probe.add_argument("--json", action="store_true", help="print the probe record as JSON")
    probe.add_argument("--data", default=None, help="an ImageNet folder: also measure the loader's images/s per core")
    probe.add_argument("--image-size", type=int, default=224, help="training crop size for --data")
    probe.add_argument("--read-images", type=int, default=512, help="training images read for --data")
    probe.add_argument("--read-workers", type=int, default=2, help="loader processes for --data")
    probe.set_defaults(handler=_cmd_probe)

    data = sub.add_parser("data", help="check a dataset against its rules, or prepare a faster-loading ImageNet copy")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="check a dataset folder: exit status 0 if it passes, 1 if not")
    check.add_argument("name", choices=checkable_datasets())
    check.add_argument("--path", help="the dataset's folder (imagenet: with train/ and val/; cifar10: the batches)")
    check.add_argument("--full", action="store_true", help="decode every image / read every batch (slow)")
    check.add_argument("--jobs", type=int, default=0, help="parallel readers (default: one per CPU)")
    check.add_argument("--json", action="store_true", help="print the whole report as JSON")
    check.add_argument("--show", type=int, default=20, help="bad files to list (default 20)")
    check.set_defaults(handler=_cmd_data)
    prepare = actions.add_parser(
        "prepare", help="write a copy of ImageNet with smaller JPEGs that loads faster, and measure how much faster"
    )
    prepare.add_argument("name", choices=["imagenet"])
    prepare.add_argument("--path", required=True, help="the ImageNet folder (train/ and val/)")
    prepare.add_argument("--out", required=True, help="where the copy goes (same layout and file names)")
    prepare.add_argument("--image-size", type=int, default=224, help="the run's [dataset] image_size (default 224)")
    prepare.add_argument("--short-side", type=int, help="shorter side of the copies (default: image size / 0.875)")
    prepare.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    prepare.add_argument("--jobs", type=int, default=0, help="parallel converters (default: one per CPU)")
    prepare.add_argument(
        "--measure-images",
        type=int,
        default=5000,
        help="training images read to measure the speed-up (0: a whole epoch; -1: do not measure; default 5000)",
    )
    prepare.add_argument("--read-workers", type=int, default=0, help="loader processes while measuring (default 0)")
    prepare.add_argument("--show", type=int, default=20, help="undecodable files to list (default 20)")
    prepare.set_defaults(handler=_cmd_data)

    arch = sub.add_parser("arch", help="show an architecture: a JSON file (aiperf or NNI format) or a seed name")
    arch.add_argument("source", help="path to a JSON file, or a seed name such as resnet50")
    arch.add_argument("--input-shape", type=int, nargs=3, default=(3, 224, 224), metavar=("C", "H", "W"))
    arch.add_argument("--num-classes", type=int, default=1000)
    arch.add_argument("--json", action="store_true", help="print the canonical JSON instead of a summary")
    arch.set_defaults(handler=_cmd_arch)
    return parser


_NEGATIVE = re.compile(r"-\d")
_PLAIN_NUMBER = re.compile(r"-\d+|-\d*\.\d+")  # argparse itself takes these as values


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--duration -5m`` -> ``--duration=-5m``: argparse takes ``-5m`` for an option and answers "expected one
    argument"; attached, the value reaches the config's own check and its message ("expected a duration such as
    90, '90s', '5m' or '2h', got '-5m'")."""
    out: list[str] = []
    for token in argv:
        negative = _NEGATIVE.match(token) and not _PLAIN_NUMBER.fullmatch(token)
        if out and negative and out[-1].startswith("--") and "=" not in out[-1] and out[-1] != "--":
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except AiperfError as exc:
        print(f"aiperf: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aiperf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `aiperf report DIR | head`: the reader left, nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
