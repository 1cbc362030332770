"""The ``aiperf`` command line.

Every subcommand is a thin layer over library functions. An :class:`~aiperf.errors.AiperfError` becomes one line on
stderr (``aiperf: error: ...``) and exit status 2; this module is the only place that exits the process.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from aiperf import __version__
from aiperf.errors import AiperfError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _cmd_arch(args: argparse.Namespace) -> int:
    """Load an architecture (aiperf or NNI JSON, or a seed name) and print its summary."""
    from aiperf import flops
    from aiperf.arch import SEEDS, Graph, load_nni, seed

    source: str = args.source
    if source in SEEDS:
        c, h, w = args.input_shape
        graph = seed(source, (c, h, w), args.num_classes)
    else:
        path = Path(source)
        try:
            text = path.read_text()
        except OSError as exc:
            raise AiperfError(f"cannot read architecture file {path}: {exc.strerror}") from None
        graph = load_nni(text) if '"layer_list"' in text else Graph.loads(text)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiperf", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"aiperf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    arch = sub.add_parser("arch", help="show an architecture: a JSON file (aiperf or NNI format) or a seed name")
    arch.add_argument("source", help="path to a JSON file, or a seed name such as resnet50")
    arch.add_argument("--input-shape", type=int, nargs=3, default=(3, 224, 224), metavar=("C", "H", "W"))
    arch.add_argument("--num-classes", type=int, default=1000)
    arch.add_argument("--json", action="store_true", help="print the canonical JSON instead of a summary")
    arch.set_defaults(handler=_cmd_arch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except AiperfError as exc:
        print(f"aiperf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aiperf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
