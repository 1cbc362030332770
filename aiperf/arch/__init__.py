"""Architecture IR: a DAG of layers with shape inference, canonical JSON, seeds and network-morphism moves.

Torch is imported only by :func:`build_module`, so the master and the search can handle architectures without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiperf.arch._graph import FORMAT, FORMAT_VERSION, ArchLimits, Graph, GraphEditor, Node, json_content_hash
from aiperf.arch._hparams import apply_hyperparameters, late_convs
from aiperf.arch._morph import (
    MORPHS,
    add_skip,
    deepen,
    deepen_targets,
    random_morph,
    skip_sources,
    skip_targets,
    widen,
    widen_targets,
)
from aiperf.arch._nni import from_nni_json, load_file, load_nni, to_nni_json
from aiperf.arch._ops import (
    OPS,
    Add,
    AvgPool,
    BatchNorm,
    Concat,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Input,
    MaxPool,
    Op,
    ReLU,
    Shape,
)
from aiperf.arch._seeds import SEEDS, resnet, seed

if TYPE_CHECKING:
    from aiperf.arch._torch import GraphModule

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MORPHS",
    "OPS",
    "SEEDS",
    "Add",
    "ArchLimits",
    "AvgPool",
    "BatchNorm",
    "Concat",
    "Conv",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "Graph",
    "GraphEditor",
    "Input",
    "MaxPool",
    "Node",
    "Op",
    "ReLU",
    "Shape",
    "add_skip",
    "apply_hyperparameters",
    "build_module",
    "deepen",
    "deepen_targets",
    "from_nni_json",
    "json_content_hash",
    "late_convs",
    "load_file",
    "load_nni",
    "random_morph",
    "resnet",
    "seed",
    "skip_sources",
    "skip_targets",
    "to_nni_json",
    "widen",
    "widen_targets",
]


def build_module(graph: Graph, limits: ArchLimits | None = None) -> GraphModule:
    """Build a freshly initialised ``torch.nn.Module`` for ``graph`` (checks ``limits`` first).

    The ceiling check runs before torch is even imported, so an oversized graph is refused without allocating.
    """
    if limits is not None:
        graph.check_limits(limits)
    from aiperf.arch._torch import build_module as _build

    return _build(graph, None)
