"""vosr's modules import in the order its package docstring documents (no cycle can form).

The order is read from the "Layers" list of ``vosr/__init__.py``, so the documentation and the
code cannot drift apart; imports inside functions count too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import vosr

PACKAGE = Path(vosr.__file__).parent


def documented_order() -> list[str]:
    doc = vosr.__doc__ or ""
    layers = doc[doc.index("Layers, in import order") :]
    return [m for m in re.findall(r"``([a-z_]+)``", layers) if (PACKAGE / f"{m}.py").is_file()]


def vosr_imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("vosr."):
                found.append((node.module.split(".")[1], node.lineno))
            elif node.module == "vosr":
                found += [(a.name, node.lineno) for a in node.names if (PACKAGE / f"{a.name}.py").is_file()]
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], node.lineno) for a in node.names if a.name.startswith("vosr.")]
    return found


def test_every_module_is_documented_once() -> None:
    order = documented_order()
    assert len(order) == len(set(order))
    assert set(order) == {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}


def test_modules_import_only_modules_listed_before_them() -> None:
    index = {m: i for i, m in enumerate(documented_order())}
    bad = [
        f"vosr/{path.name}:{line} imports vosr.{target}"
        for path in sorted(PACKAGE.glob("*.py"))
        if path.stem != "__init__"
        for target, line in vosr_imports(path)
        if index[target] >= index[path.stem]
    ]
    assert not bad, "\n".join(bad)
