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


def _imports(path: Path) -> set[str]:
    """Absolute names imported anywhere in ``path`` (lazy imports inside functions included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
    return names


MODULES = {_module(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


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
