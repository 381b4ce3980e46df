"""Exit 0 when this interpreter already satisfies the project's test dependencies.

Used by `.ci/run` to reuse an existing virtual environment (a developer's `.venv`) instead of
building a second one: every requirement of the core, the `dev` and `postgres` extras (extras
expanded recursively, environment markers honoured) must be installed at a matching version.
Prints the first unmet requirement otherwise and exits 1.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: no tomllib; a fresh environment will be built
    print("tomllib unavailable")
    sys.exit(1)
try:
    from packaging.requirements import Requirement
except ModuleNotFoundError:
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]


def main() -> int:
    project = tomllib.loads(Path(sys.argv[1]).read_text())["project"]
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    name = project["name"]
    todo = [(r, "") for r in project.get("dependencies", [])]
    seen_extras = set()
    wanted = ["dev", "postgres"]
    while wanted:
        extra = wanted.pop()
        if extra in seen_extras:
            continue
        seen_extras.add(extra)
        for r in extras.get(extra, []):
            req = Requirement(r)
            if req.name == name:  # self-reference such as screensr[all]
                wanted.extend(req.extras)
            else:
                todo.append((r, extra))
    for text, extra in todo:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        try:
            installed = md.version(req.name)
        except md.PackageNotFoundError:
            print(f"missing {req.name}")
            return 1
        base = re.match(r"[0-9][0-9a-zA-Z.]*", installed)
        if req.specifier and not req.specifier.contains(base.group(0) if base else installed, prereleases=True):
            print(f"{req.name} {installed} does not satisfy {req.specifier}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
