"""Import rules of the package's layers, checked on the source (no imports executed)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "qrerank"
SHELLS = ("qrerank.cli", "qrerank.service")


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, eager: bool = False) -> set[str]:
    """Absolute names imported in ``path``: anywhere (lazy imports inside functions included), or
    with ``eager`` only those run at import time (module level, ``if TYPE_CHECKING:`` left out),
    where ``from pkg import name`` also adds ``pkg.name`` in case it is a submodule.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    for node in _eager_nodes(tree.body) if eager else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            if eager:
                names.update(f"{module}.{a.name}" for a in node.names)
    return names


def _eager_nodes(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run when the module is imported: module level, inside if/try, not in defs."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                out += _eager_nodes(node.body) + _eager_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            out += _eager_nodes(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                out += _eager_nodes(handler.body)
        else:
            out.append(node)
    return out


MODULES = {_module(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}
EAGER = {_module(p): _imports(p, eager=True) for p in sorted(PKG.rglob("*.py"))}


def _top(name: str) -> str:
    return name.split(".")[0]


def test_core_imports_only_torch_and_the_standard_library() -> None:
    allowed = {"torch", "__future__", "qrerank"} | set(sys.stdlib_module_names)
    for mod, names in MODULES.items():
        if not mod.startswith("qrerank.core"):
            continue
        bad = sorted(
            n
            for n in names
            if _top(n) not in allowed or (_top(n) == "qrerank" and not n.startswith("qrerank.core"))
        )
        assert not bad, f"{mod} imports {bad}: core stays pure torch"


def test_nothing_below_the_shells_imports_them() -> None:
    for mod, names in MODULES.items():
        if mod.startswith(SHELLS) or mod == "qrerank.__main__":
            continue
        bad = sorted(n for n in names if n.startswith(SHELLS))
        assert not bad, f"{mod} imports the shells {bad}: only cli/ and service/ may"


def test_the_rules_see_real_imports() -> None:
    """Guards the two rules above against passing because the parser found nothing."""
    assert {"torch", "math"} <= MODULES["qrerank.core.fidelity"]
    assert "qrerank.cli" in MODULES["qrerank.__main__"]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = [stack.pop()]
            while component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _internal_edges(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Module -> the qrerank modules it imports (a name resolved to its longest known module)."""

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    return {
        mod: {r for n in names if _top(n) == "qrerank" and (r := resolve(n)) and r != mod}
        for mod, names in modules.items()
    }


def _subpackage(mod: str) -> str:
    return ".".join(mod.split(".")[:2])


def test_no_import_cycle_at_import_time() -> None:
    """No module imports, at module level, a module that imports it back (directly or not)."""
    cycles = _cycles(_internal_edges(EAGER))
    assert not cycles, f"import cycles at import time: {cycles}"


def test_subpackages_form_no_cycle() -> None:
    """Subpackages (lazy imports included; the root ``qrerank`` re-exports left out) form no cycle."""
    graph: dict[str, set[str]] = {}
    for mod, targets in _internal_edges(MODULES).items():
        if mod in ("qrerank", "qrerank.__main__"):
            continue
        pkg = _subpackage(mod)
        graph.setdefault(pkg, set()).update(
            _subpackage(t) for t in targets if t != "qrerank" and _subpackage(t) != pkg
        )
    cycles = _cycles(graph)
    assert not cycles, f"import cycles between subpackages: {cycles}"


def test_train_does_not_import_eval() -> None:
    """Training reads its data through the shared readers (``qrerank.judgments``), not eval/."""
    bad = sorted(
        f"{mod} -> {n}" for mod, names in MODULES.items() if mod.startswith("qrerank.train")
        for n in names if n.startswith("qrerank.eval")
    )  # fmt: skip
    assert not bad, f"train/ imports eval/: {bad}"


def test_the_cycle_check_sees_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert "qrerank.rerank.scoring" in _internal_edges(EAGER)["qrerank.rerank.reranker"]
