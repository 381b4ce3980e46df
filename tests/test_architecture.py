"""The package layout holds: dependencies flow one way and no module imports itself in a circle.

Parses every module's imports (``import`` and ``from ... import`` anywhere in the file, including
inside functions, where a cycle hides best) with ``ast``, so the check needs no import side
effects and sees lazy imports too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "data_capture", "vosr", "benchmark", "leaderboard", "screensr")

# what each package may import (the one-way rule of docs/architecture.md)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "data_capture": {"core"},
    "vosr": {"core"},
    "benchmark": {"core", "vosr", "data_capture"},
    "leaderboard": {"core", "benchmark", "vosr", "data_capture"},
    "screensr": {"core", "benchmark", "vosr", "data_capture", "leaderboard"},
}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            out[_module_name(path, root)] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> list[tuple[str, int, bool]]:
    """``(imported project module, line, top_level)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, int, bool]] = []

    def resolve(target: str) -> str | None:
        # the longest known module prefix of the dotted target
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            cand = ".".join(parts[:i])
            if cand in known:
                return cand
        return None

    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        for t in targets:
            r = resolve(t)
            if r is not None and r != name:
                found.append((r, node.lineno, id(node) in top_level))
    return found


def _graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, list[tuple[str, int, bool]]]:
    mods = _modules(root, packages)
    known = set(mods)
    return {name: _imports(path, name, known) for name, path in mods.items()}


def _direction_violations(graph: dict[str, list[tuple[str, int, bool]]]) -> list[str]:
    bad = []
    for mod, edges in graph.items():
        pkg = mod.split(".")[0]
        for target, line, _ in edges:
            tpkg = target.split(".")[0]
            if tpkg != pkg and tpkg not in ALLOWED[pkg]:
                bad.append(f"{mod}:{line} imports {target} ({pkg} must not depend on {tpkg})")
    return bad


def _cycles(edges_by_module: dict[str, list[tuple[str, int, bool]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = {m: sorted({t for t, _, _ in edges}) for m, edges in edges_by_module.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, []):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            strongconnect(v)
    return cycles


def test_packages_import_only_downstream() -> None:
    bad = _direction_violations(_graph())
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_see_function_local_and_relative_imports(tmp_path: Path) -> None:
    # a hand-made tree with one cycle hidden in a function-local relative import and one
    # direction violation: both checks must report exactly those
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (tmp_path / "core" / "b.py").write_text("from core.a import f\n\ndef g():\n    return f\n")
    (tmp_path / "core" / "c.py").write_text("import benchmark.x\n")
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "__init__.py").write_text("")
    (tmp_path / "benchmark" / "x.py").write_text("from core import c\n")
    graph = _graph(tmp_path, ("core", "benchmark"))
    assert sorted(_cycles(graph)) == [["benchmark.x", "core.c"], ["core.a", "core.b"]]
    assert _direction_violations(graph) == ["core.c:1 imports benchmark.x (core must not depend on benchmark)"]
