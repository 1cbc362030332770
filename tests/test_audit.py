"""Static audit of aiperf/ (by AST, not grep): nothing that runs code or a shell from data, and no path built from an
identifier that has not been through :func:`aiperf.paths.check_id`.

Forbidden: calls of ``eval``/``exec``/``compile``; importing ``pickle``, ``marshal``, ``shelve`` (or dill,
cloudpickle, joblib); ``shell=True``, ``os.system``, ``os.popen`` and the other shell runners; loaders that unpickle
by another name (``torch.load`` without ``weights_only=True``, ``numpy.load(allow_pickle=True)``, ``yaml.load``,
``pandas.read_pickle``), and the methods of a submitit job that unpickle its files on the shared filesystem
(``.result()``, ``.results()``, ``.exception()``, ``.submission()``: flagged in any module that imports submitit,
and elsewhere on a receiver named like a job). The one exception: in ``aiperf/datasets/`` (where the loaders live), a
class that subclasses
``pickle.Unpickler`` and overrides ``find_class`` with a refusal, for CIFAR-10's official pickle batches; that module
may use nothing else of ``pickle`` but the exception types. Each rule is first shown to catch a violation in a small
snippet.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aiperf"

PICKLERS = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
CODE_RUNNERS = {"eval", "exec", "compile"}
SHELL_CALLS = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"),
}
PICKLE_EXCEPTIONS = {"UnpicklingError", "PickleError", "Unpickler"}  # Unpickler only as a base class, see below
# submitit.Job methods that unpickle the job's result or submission file (core.py: utils.pickle_load).
JOB_UNPICKLERS = {"result", "results", "exception", "submission"}
JOB_NAME = re.compile(r"^(?:\w+_)?jobs?$")  # job, jobs, probe_job ...: receivers that hold submitit jobs
# Variable names that hold identifiers coming from configs, journals or the command line.
ID_NAME = re.compile(r"^(?:\w+_)?(?:id|worker|trial|writer|experiment|run|job)(?:_id|_name)?$")
PATH_CALLS = {"Path", "PurePath", "joinpath", "join", "open", "with_name", "with_stem", "mkdir", "makedirs"}
JOINERS = {"joinpath", "with_name", "with_stem"}  # every argument becomes a path component


@dataclass(frozen=True)
class Finding:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for an attribute chain or name, '' otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _restricted_unpicklers(tree: ast.Module) -> set[str]:
    """Classes that subclass pickle.Unpickler and override find_class with a body that can refuse (raises)."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        if not any(_dotted(base) in ("pickle.Unpickler", "Unpickler") for base in node.bases):
            continue
        finder = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "find_class"), None)
        if finder is not None and any(isinstance(n, ast.Raise) for n in ast.walk(finder)):
            found.add(node.name)
    return found


def _id_names(node: ast.AST) -> list[str]:
    """Identifier-like variables used in ``node`` other than inside a ``check_id(...)`` call."""
    if isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] == "check_id":
        return []
    if isinstance(node, ast.Name | ast.Attribute):
        name = _dotted(node).split(".")[-1] if _dotted(node) else ""
        return [name] if name and ID_NAME.match(name) else []
    out: list[str] = []
    for child in ast.iter_child_nodes(node):
        out.extend(_id_names(child))
    return out


def _joined_ids(tail: str, call: ast.Call) -> list[str]:
    """Identifier names a path-building call joins into a path.

    ``Path(x)`` or ``open(x)`` of one given path is not a join (a user names the experiment directory); a second
    component (``Path(root, worker)``, ``os.path.join(root, worker)``), any ``joinpath(worker)``, or a string built
    around an identifier (``open(f"/x/{trial}")``) is.
    """
    args = [*call.args, *(k.value for k in call.keywords)]
    names = []
    for index, arg in enumerate(args):
        built = isinstance(arg, ast.JoinedStr | ast.BinOp)
        if tail in JOINERS or built or (tail in ("Path", "PurePath", "join") and index > 0):
            names.extend(_id_names(arg))
    return names


def audit_source(source: str, module: str) -> list[Finding]:
    """Every violation in one module's source; ``module`` is its path relative to the repository."""
    tree = ast.parse(source)
    findings: list[Finding] = []
    in_loaders = module.startswith("aiperf/datasets/")
    unpicklers = _restricted_unpicklers(tree) if in_loaders else set()
    base_uses: set[int] = set()  # ids of pickle.Unpickler nodes that are a restricted unpickler's base
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in unpicklers:
            base_uses.update(id(b) for b in node.bases)

    def flag(node: ast.AST, what: str) -> None:
        findings.append(Finding(f"{module}:{getattr(node, 'lineno', 0)}", what))

    uses_submitit = any(
        (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "submitit" for a in n.names))
        or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "submitit")
        for n in ast.walk(tree)
    )

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top not in PICKLERS:
                    continue
                if top == "pickle" and unpicklers:
                    if isinstance(node, ast.ImportFrom) and any(a.name not in PICKLE_EXCEPTIONS for a in node.names):
                        flag(node, f"from pickle import {[a.name for a in node.names]}: only the exception types")
                    continue
                flag(node, f"imports {name} (never unpickle data: use JSON)")
        elif isinstance(node, ast.Attribute) and _dotted(node.value) in PICKLERS:
            allowed = node.attr in ("UnpicklingError", "PickleError") or (
                node.attr == "Unpickler" and id(node) in base_uses
            )
            if _dotted(node.value) == "pickle" and unpicklers and allowed:
                continue
            flag(node, f"uses {_dotted(node)}")
        elif isinstance(node, ast.Call):
            func = _dotted(node.func)
            tail = func.split(".")[-1]
            if (isinstance(node.func, ast.Name) and func in CODE_RUNNERS) or func in ("builtins.eval", "builtins.exec"):
                flag(node, f"calls {func}()")
            if tuple(func.split(".")[-2:]) in SHELL_CALLS:
                flag(node, f"calls {func}() (runs a shell)")
            shell = _keyword(node, "shell")
            if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
                flag(node, f"calls {func}() with shell={ast.unparse(shell)}")
            if func.endswith("torch.load") and not _is_true(_keyword(node, "weights_only")):
                flag(node, "torch.load without weights_only=True unpickles")
            if tail == "load" and func.split(".")[0] in ("np", "numpy") and _is_true(_keyword(node, "allow_pickle")):
                flag(node, "numpy.load(allow_pickle=True) unpickles")
            if func in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                flag(node, f"{func} can build arbitrary objects (use yaml.safe_load or JSON)")
            if tail == "read_pickle":
                flag(node, f"{func} unpickles")
            if isinstance(node.func, ast.Attribute) and node.func.attr in JOB_UNPICKLERS:
                receiver = _dotted(node.func.value).split(".")[-1]
                if uses_submitit or JOB_NAME.match(receiver):
                    flag(node, f".{node.func.attr}() of a submitit job unpickles its file (read the job's log instead)")
            if tail == "pickle_load":
                flag(node, f"{func} unpickles")
            if tail in PATH_CALLS and not module.endswith("aiperf/paths.py"):
                names = _joined_ids(tail, node)
                if names:
                    flag(node, f"{func}() builds a path from {names} without check_id")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and not module.endswith("aiperf/paths.py"):
            names = _id_names(node.right)
            if names and not isinstance(node.right, ast.Constant):
                flag(node, f"'/' builds a path from {names} without check_id")
    return findings


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


# -- each rule catches what it should --------------------------------------------------------------------------------

BAD = {
    "eval": "x = eval(text)",
    "exec": "exec(code)",
    "compile": "c = compile(src, 'f', 'exec')",
    "builtins.eval": "import builtins\nbuiltins.eval('1')",
    "import pickle": "import pickle\npickle.loads(b'')",
    "from pickle": "from pickle import loads",
    "marshal": "import marshal",
    "shelve": "import shelve",
    "cloudpickle": "import cloudpickle",
    "shell=True": "import subprocess\nsubprocess.run('ls', shell=True)",
    "shell=var": "import subprocess\nsubprocess.Popen(cmd, shell=flag)",
    "os.system": "import os\nos.system('rm -rf /')",
    "os.popen": "import os\nos.popen('ls')",
    "getoutput": "import subprocess\nsubprocess.getoutput('ls')",
    "torch.load": "import torch\ntorch.load(path)",
    "torch.load weights_only=False": "import torch\ntorch.load(path, weights_only=False)",
    "np.load": "import numpy as np\nnp.load(f, allow_pickle=True)",
    "yaml.load": "import yaml\nyaml.load(text)",
    "read_pickle": "import pandas as pd\npd.read_pickle(p)",
    "path from worker_id": "def f(root, worker_id):\n    return root / worker_id",
    "path from f-string": "def f(root, trial):\n    return root / f'{trial}.log'",
    "Path(f-string)": "from pathlib import Path\ndef f(trial_id):\n    return Path(f'/x/{trial_id}')",
    "Path(root, worker)": "from pathlib import Path\ndef f(root, worker):\n    return Path(root, worker)",
    "open(f-string)": "def f(args):\n    return open(f'/tmp/{args.worker}.txt')",
    "joinpath": "def f(root, experiment):\n    return root.joinpath(experiment)",
    "os.path.join": "import os\ndef f(d, job_id):\n    return os.path.join(d, job_id)",
    "submitit job.result": "import submitit\ndef f(ex, fn):\n    return ex.submit(fn).result()",
    "submitit results": "def f(launcher):\n    import submitit\n    return [j.results() for j in launcher.all]",
    "submitit exception": "from submitit import AutoExecutor\ndef f(x):\n    return x.exception()",
    "handle.job.result": "def f(handle):\n    return handle.job.result()",
    "probe_job.submission": "def f(probe_job):\n    return probe_job.submission()",
    "pickle_load": "from submitit.core import utils\nutils.pickle_load(path)",
}
GOOD = {
    "check_id": "from aiperf.paths import check_id\ndef f(root, worker_id):\n    return root / check_id(worker_id)",
    "constant": "def f(root):\n    return root / 'trials'",
    "a given directory": "from pathlib import Path\ndef f(args):\n    return Path(args.experiment)",
    "shell=False": "import subprocess\nsubprocess.run(['ls'], shell=False)",
    "torch.load safe": "import torch\ntorch.load(path, weights_only=True)",
    "torch.compile": "import torch\nm = torch.compile(model)",
    "re.compile": "import re\np = re.compile('x')",
    "yaml.safe_load": "import yaml\nyaml.safe_load(text)",
    "np.load": "import numpy as np\nnp.load(f)",
    "a future's result": "def f(check):\n    return check.result()",
}
RESTRICTED = """
import pickle
class _Batches(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in {("builtins", "dict")}:
            raise pickle.UnpicklingError(f"{module}.{name} refused")
        return super().find_class(module, name)
def read(handle):
    try:
        return _Batches(handle).load()
    except pickle.UnpicklingError:
        raise
"""


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_rule_catches_its_violation(name: str) -> None:
    assert audit_source(BAD[name], "aiperf/example.py"), f"{name} not caught"


@pytest.mark.parametrize("name", sorted(GOOD))
def test_safe_forms_pass(name: str) -> None:
    assert audit_source(GOOD[name], "aiperf/example.py") == []


def test_restricted_unpickler_is_allowed_only_in_datasets_and_only_as_is() -> None:
    assert audit_source(RESTRICTED, "aiperf/datasets/_example.py") == []
    assert audit_source(RESTRICTED, "aiperf/report/_example.py")  # not in aiperf/datasets/
    assert audit_source(RESTRICTED, "aiperf/train/_example.py")  # nor where the loaders used to live
    permissive = RESTRICTED.replace('            raise pickle.UnpicklingError(f"{module}.{name} refused")\n', "")
    permissive = permissive.replace('        if (module, name) not in {("builtins", "dict")}:\n', "")
    assert audit_source(permissive, "aiperf/datasets/_example.py"), "a find_class that never refuses"
    for extra in (
        "\npickle.loads(b'')",
        "\npickle.load(handle)",
        "\npickle.Unpickler(handle).load()",
        "\npickle.dump(1, f)",
    ):
        assert audit_source(RESTRICTED + extra, "aiperf/datasets/_example.py"), extra
    assert audit_source(RESTRICTED + "\nfrom pickle import loads", "aiperf/datasets/_example.py")


# -- the package -----------------------------------------------------------------------------------------------------


def test_aiperf_has_no_code_execution_shell_or_unpickling() -> None:
    findings = [f for path in _modules() for f in audit_source(path.read_text(), str(path.relative_to(ROOT)))]
    assert findings == [], "\n".join(map(str, findings))


def test_the_restricted_unpicklers_refuse_a_malicious_pickle(tmp_path: Path) -> None:
    """Every restricted unpickler in aiperf/datasets/ refuses a pickle that would call a function (here os.mkdir)."""
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.mkdir, (str(target),))

    payload = pickle.dumps({b"data": Evil()}, protocol=2)
    found = 0
    for path in sorted((PACKAGE / "datasets").glob("*.py")):
        classes = _restricted_unpicklers(ast.parse(path.read_text()))
        if not classes:
            continue
        module = importlib.import_module(f"aiperf.datasets.{path.stem}")
        for name in classes:
            cls = getattr(module, name)
            params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
            required = [p for p in params if p.default is inspect.Parameter.empty and p.kind == p.POSITIONAL_OR_KEYWORD]
            args: list[object] = [io.BytesIO(payload)] + [tmp_path / "evil.pkl"] * (len(required) - 1)
            with pytest.raises(Exception) as refused:  # any refusal, as long as nothing ran
                cls(*args).load()
            assert not target.exists(), f"{name} ran os.mkdir from a pickle"
            assert "mkdir" in str(refused.value) or "posix" in str(refused.value) or "os" in str(refused.value)
            found += 1
    if found == 0:
        pytest.skip("no restricted unpickler in aiperf/datasets/ yet")
