#!/usr/bin/env python3
"""Check built wheels and sdists before anyone installs them.

    python tools/check_dist.py DIR_OR_FILE [...]

Each wheel must
  * not ship ``sagellm/__init__.py``: the namespace is shared by every
    sageLLM distribution, and one wheel owning it breaks all the others;
  * ship exactly one ``sagellm/<module>/`` package with its ``py.typed``;
  * depend on no sageLLM distribution but sagellm-core (sagellm-engines,
    which assembles the modules, is the exception) -- the import rule
    restated for dependencies.
Each sdist must carry ``pyproject.toml`` and no ``src/sagellm/__init__.py``.

Exit status 0 when every file passes, 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import email.parser
import re
import sys
import tarfile
import zipfile
from pathlib import Path

NAMESPACE = "sagellm"
ASSEMBLERS = frozenset({"sagellm-engines"})  # may depend on every module
ALLOWED_DEPS = frozenset({"sagellm-core"})
REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_wheel(path: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        metadata_name = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        metadata = wheel.read(metadata_name).decode("utf-8") if metadata_name else ""
    for stray in (f"{NAMESPACE}/__init__.py", f"{NAMESPACE}/__init__.pyi"):
        if stray in names:
            problems.append(f"{path.name}: ships {stray}; '{NAMESPACE}' must stay a PEP 420 namespace")
    tops = {n.split("/", 1)[0] for n in names}
    unexpected = sorted(t for t in tops if t != NAMESPACE and not t.endswith((".dist-info", ".data")))
    if unexpected:
        problems.append(f"{path.name}: unexpected top-level entries {unexpected} (only {NAMESPACE}/ belongs here)")
    modules = sorted({n.split("/")[1] for n in names if n.startswith(f"{NAMESPACE}/") and n.count("/") >= 2})
    if len(modules) != 1:
        problems.append(f"{path.name}: expected exactly one {NAMESPACE}/<module>/ package, found {modules}")
    for module in modules:
        for required in ("__init__.py", "py.typed"):
            if f"{NAMESPACE}/{module}/{required}" not in names:
                problems.append(f"{path.name}: missing {NAMESPACE}/{module}/{required}")
    if not metadata:
        problems.append(f"{path.name}: no .dist-info/METADATA")
        return problems
    problems += check_requirements(path.name, metadata)
    return problems


def check_requirements(label: str, metadata: str) -> list[str]:
    message = email.parser.HeaderParser().parsestr(metadata)
    name = normalize(message.get("Name", ""))
    if name in ASSEMBLERS:
        return []
    problems = []
    for requirement in message.get_all("Requires-Dist") or []:
        match = REQ_NAME.match(requirement)
        dep = normalize(match.group(1)) if match else ""
        if dep.startswith(f"{NAMESPACE}-") and dep not in ALLOWED_DEPS:
            problems.append(
                f"{label}: {name} requires '{requirement}'; a module may depend on sagellm-core and "
                f"third-party libraries only"
            )
    return problems


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as sdist:
        names = [m.name for m in sdist.getmembers()]
    relative = {n.split("/", 1)[1] for n in names if "/" in n}
    problems = []
    if "pyproject.toml" not in relative:
        problems.append(f"{path.name}: no pyproject.toml at the top of the sdist")
    if f"src/{NAMESPACE}/__init__.py" in relative:
        problems.append(f"{path.name}: ships src/{NAMESPACE}/__init__.py; '{NAMESPACE}' must stay a PEP 420 namespace")
    return problems


def collect(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.rglob("*.whl")) + sorted(path.rglob("*.tar.gz"))
        else:
            files.append(path)
    return files


def check(paths: list[Path]) -> tuple[list[Path], list[str]]:
    files = collect(paths)
    problems = []
    for path in files:
        if path.name.endswith(".whl"):
            problems += check_wheel(path)
        elif path.name.endswith(".tar.gz"):
            problems += check_sdist(path)
        else:
            problems.append(f"{path}: neither a wheel nor an sdist")
    return files, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("paths", nargs="+", type=Path, help="wheels, sdists or directories holding them")
    args = parser.parse_args(argv)
    files, problems = check(args.paths)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not files:
        print("check_dist: no wheel or sdist found", file=sys.stderr)
        return 1
    if problems:
        print(f"check_dist: {len(problems)} problem(s) in {len(files)} file(s)", file=sys.stderr)
        return 1
    print(f"check_dist: OK ({len(files)} files: {', '.join(f.name for f in files)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
