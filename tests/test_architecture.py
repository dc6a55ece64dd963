"""The layout as a contract: no import circles (function-local imports included), a pure core, kfp
only in the Kubeflow layer, no private name of another library anywhere, and a function-local import
only with a comment giving its reason."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: where each installed package's sources live (components/ and pipeline/ are mapped into debiaskd)
SOURCES = {"debiaskd": ROOT / "src" / "debiaskd", "debiaskd.components": ROOT / "components",
           "debiaskd.pipeline": ROOT / "pipeline"}
HEAVY = ("torch", "torchvision", "transformers", "mlflow", "kfp", "great_expectations")
#: documented public functions whose names start with an underscore
PUBLIC_UNDERSCORED = {"os._exit"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            if name.startswith("debiaskd.components") or name.startswith("debiaskd.pipeline") \
                    or not any(name.startswith(p + ".") or name == p for p in ("debiaskd.components",
                                                                               "debiaskd.pipeline")):
                found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path, module: str) -> list[tuple[str, ast.AST]]:
    """Every module ``module`` imports (absolute names), with the node, anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(kept + ([base] if base else []))
            out.append((base, node))
            out += [(f"{base}.{alias.name}", node) for alias in node.names if f"{base}.{alias.name}" in MODULES]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for target, _ in _imports(path, name):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            # a module's own packages are imported before it by Python itself: not an edge of a circle
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_module_list_covers_the_package():
    assert "debiaskd.core.config" in MODULES and "debiaskd.components" in MODULES
    assert "debiaskd.pipeline.study_pipeline" in MODULES and len(MODULES) > 40


def test_no_import_circle_even_through_function_local_imports():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("debiaskd.core.")))
def test_the_core_is_pure(module):
    """The core (config, the study's design, statistics, the gate) imports no framework."""
    heavy = sorted({t for t, _ in _imports(MODULES[module], module) if t.split(".")[0] in HEAVY})
    assert heavy == []


def test_only_the_kubeflow_layer_imports_kfp():
    users = sorted(m for m, p in MODULES.items() if any(t.split(".")[0] == "kfp" for t, _ in _imports(p, m)))
    assert users and all(m.startswith(("debiaskd.components", "debiaskd.pipeline")) for m in users), users


def _private_uses(path: Path, module: str) -> list[str]:
    """Private names of other libraries used in a file: ``from lib import _x``, ``lib._x`` (also through
    an alias or ``getattr(lib, "_x")``), or a private module ``lib._mod``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def private(name: str) -> bool:
        return any(part.startswith("_") and not (part.startswith("__") and part.endswith("__"))
                   for part in name.split("."))

    external: set[str] = set()  # local names bound to other libraries' modules or objects
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("debiaskd"):
                    external.add(alias.asname or alias.name.split(".")[0])
                    if private(alias.name):
                        found.append(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not (node.module or "").startswith("debiaskd"):
            if private(node.module or ""):
                found.append(node.module)
            for alias in node.names:
                external.add(alias.asname or alias.name)
                if private(alias.name):
                    found.append(f"{node.module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in external:
                found.append(f"{ast.unparse(node.value)}.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and node.args[0].id in external \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) \
                and private(node.args[1].value):
            found.append(f"{node.args[0].id}.{node.args[1].value}")
    return [name for name in found if name not in PUBLIC_UNDERSCORED]


def test_no_private_name_of_another_library():
    found = {m: uses for m, p in MODULES.items() if (uses := _private_uses(p, m))}
    assert found == {}


def test_the_private_name_check_sees_what_it_should(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import threading, atexit as ax\nfrom mlflow.utils import _x\nfrom kfp.local import _y as z\n"
                      "import a._b\nimport mlflow\nmlflow.tracking._ts.x\n"
                      "threading._shutdown()\nax._run_exitfuncs()\ngetattr(threading, '_shutdown')\n"
                      "import os\nos.__name__\nos._exit(0)\nfrom debiaskd.core import paths\npaths._internal\n")
    assert sorted(_private_uses(sample, "sample")) == sorted([
        "mlflow.utils._x", "kfp.local._y", "mlflow.tracking._ts", "a._b", "threading._shutdown", "ax._run_exitfuncs",
        "threading._shutdown"])


#: comments that are tool directives, not a reason for importing inside a function
NOT_A_REASON = ("noqa", "type:", "pragma", "fmt:")


def _unexplained_local_imports(path: Path) -> list[int]:
    """Lines of the function-local imports in ``path`` that carry no reason: a reason is a comment on the
    import's own line(s), or on the line just above it or above the run of imports it opens with (the
    statements before it in the same block being imports too, as isort groups them)."""
    text = path.read_text(encoding="utf-8")
    comments: dict[int, str] = {}  # line → its comment, without the '#'
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = text.splitlines()

    def reason_on(line: int) -> bool:
        return line in comments and bool(comments[line]) and not comments[line].startswith(NOT_A_REASON)

    def comment_line_above(line: int) -> bool:
        return line > 1 and lines[line - 2].lstrip().startswith("#") and reason_on(line - 1)

    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            run_start = None  # the first import of the run of imports the current statement belongs to
            for statement in block:
                if isinstance(statement, ast.Import | ast.ImportFrom):
                    run_start = run_start or statement
                    if in_function and not (
                            any(reason_on(n) for n in range(statement.lineno, statement.end_lineno + 1))
                            or comment_line_above(statement.lineno) or comment_line_above(run_start.lineno)):
                        found.append(statement.lineno)
                else:
                    run_start = None
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(text), False)
    return sorted(found)


def test_every_function_local_import_says_why():
    """A function-local import only where the module is slow and optional, with a one-line reason.
    ``components/`` is exempt: kfp ships each component function's source alone, so its imports must
    be inside the function (each components file says so once, at its top)."""
    found = {m: lines for m, p in MODULES.items()
             if not m.startswith("debiaskd.components") and (lines := _unexplained_local_imports(p))}
    assert found == {}


def test_the_reason_check_sees_what_it_should(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import json\n"                                     # 1 module level: not checked
        "def a():\n"
        "    import torch\n"                                # 3 no reason
        "    import mlflow  # slow, only here\n"            # 4 reason on the same line
        "def b():\n"
        "    # pandas: slow, only here\n"
        "    import pandas\n"                               # 7 reason just above
        "    import numpy\n"                                # 8 in the run the comment opens
        "\n"
        "    from debiaskd import x\n"                       # 10 still that run (isort's blank line)
        "    y = 1\n"
        "    import sklearn\n"                              # 12 a new run: no reason
        "    import scipy  # noqa: F401\n"                  # 13 a directive is no reason
        "    s = '# not a comment'; import re\n"            # 14 a '#' in a string is no comment
        "class C:\n"
        "    import os\n"                                   # 16 class body, not a function: not checked
        "    def m(self):\n"
        "        if self:\n"
        "            import kfp  # kfp: slow, only here\n"  # 19 reason, nested block
        "        else:\n"
        "            import yaml\n"                         # 21 no reason, nested block
        "f = lambda: __import__('x')\n", encoding="utf-8")
    assert _unexplained_local_imports(sample) == [3, 12, 13, 14, 21]
