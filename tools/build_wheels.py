#!/usr/bin/env python3
"""Build every package's sdist and wheel into one directory, check them, and write release notes.

    python tools/build_wheels.py                      # all packages -> dist/
    python tools/build_wheels.py --package kv_pool --out /tmp/dist

One flat directory of wheels is a package index for pip, so every
distribution installs by name without a server::

    pip install --find-links dist -c constraints.txt sagellm-prefix-cache
    pip install --find-links dist -c constraints.txt 'sagellm-engines[all]'

For each package: the sdist, then the wheel built from the unpacked sdist (a
file missing from the sdist fails here, not on a user's machine), then
``tools/check_dist.py`` (namespace and dependency rules) and ``twine check
--strict`` (the metadata an index will render) on everything built, and
``<dist>-<version>.release-notes.md`` from the package's CHANGELOG entry for
that version. Earlier artifacts of the same distributions in the output
directory are removed first, so ``--find-links`` never sees a stale version.

Builds run without isolation by default (hatchling must be installed, as in
the dev venv and ``nox -s dist``): an isolated build would fetch hatchling
into a throwaway venv fifteen times. Needs ``build`` and ``twine``
(``pip install -c constraints.txt build twine hatchling``).

Exit status: 0 all built and checked, 1 a build or check failed, 2 bad
arguments or a missing tool.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import check_dist
from release_notes import ReleaseNotes, ReleaseNotesError, release_notes, write
from repo_layout import ROOT, Package, discover, find

INSTALL_HINT = "pip install -c constraints.txt build twine hatchling"


@dataclass(slots=True)
class Outcome:
    """What one run produced and what went wrong, reported together at the end."""

    files: list[Path] = field(default_factory=list)
    notes: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def artifact_stem(distribution: str) -> str:
    """File-name form of a distribution (PEP 427/625): ``sagellm-kv-pool`` -> ``sagellm_kv_pool``."""
    return check_dist.normalize(distribution).replace("-", "_")


def missing_tools(twine: bool, isolation: bool) -> list[str]:
    needed = ["build"] + (["twine"] if twine else []) + ([] if isolation else ["hatchling"])
    return [name for name in needed if importlib.util.find_spec(name) is None]


def clean(out: Path, pkg: Package) -> None:
    """Drop earlier artifacts of this distribution: pip picks the newest version in --find-links."""
    stem = artifact_stem(pkg.distribution())
    for pattern in (f"{stem}-*.whl", f"{stem}-*.tar.gz", f"{pkg.distribution()}-*.release-notes.md"):
        for old in out.glob(pattern):
            old.unlink()


def build_one(pkg: Package, out: Path, isolation: bool) -> tuple[list[Path], str | None]:
    """sdist + wheel of one package; returns the new files, or the tail of the build log on failure."""
    before = set(out.iterdir())
    command = [sys.executable, "-m", "build", "--outdir", str(out), *([] if isolation else ["--no-isolation"])]
    result = subprocess.run([*command, str(pkg.path)], capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n    ".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        return [], f"{pkg.rel}: build failed:\n    {tail}"
    return sorted(set(out.iterdir()) - before), None


def twine_check(files: list[Path]) -> list[str]:
    """``twine check --strict``: the long description renders and the metadata an index needs is there."""
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)], capture_output=True, text=True
    )
    if result.returncode == 0:
        return []
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "PASSED" not in line]
    return ["twine check: " + line.strip() for line in lines if line.strip()]


def build_all(packages: list[Package], out: Path, *, isolation: bool = False, twine: bool = True) -> Outcome:
    """Release notes, builds, then the checks over everything built (each problem reported once)."""
    out.mkdir(parents=True, exist_ok=True)
    outcome = Outcome()
    notes: list[ReleaseNotes] = []
    for pkg in packages:
        try:
            notes.append(release_notes(pkg))
        except ReleaseNotesError as exc:
            outcome.problems.append(str(exc))
    for pkg in packages:
        clean(out, pkg)
        started = time.monotonic()
        files, problem = build_one(pkg, out, isolation)
        outcome.files += files
        if problem:
            outcome.problems.append(problem)
        built = ", ".join(f.name for f in files) or "FAILED"
        print(f"  {pkg.distribution():<32} {built} ({time.monotonic() - started:.1f} s)")
    outcome.notes = [write(note, out) for note in notes]
    if outcome.files:
        outcome.problems += check_dist.check(outcome.files)[1]
        if twine:
            outcome.problems += twine_check(outcome.files)
    return outcome


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Install by name afterwards: pip install --find-links dist -c constraints.txt sagellm-prefix-cache",
    )
    top.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default: dist/ at the root)")
    top.add_argument(
        "--package", action="append", default=[], help="short name, distribution or directory (repeatable; default all)"
    )
    top.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    top.add_argument("--isolation", action="store_true", help="build in isolated venvs (fetches hatchling each time)")
    top.add_argument("--no-twine", action="store_true", help="skip 'twine check' (e.g. where twine is not installable)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    root = args.root.resolve()
    packages = discover(root)
    try:
        wanted = {find(name, root).rel for name in args.package}
    except KeyError as exc:
        print(f"build_wheels: {exc.args[0]}", file=sys.stderr)
        return 2
    packages = [pkg for pkg in packages if not wanted or pkg.rel in wanted]
    if not packages:
        print(f"build_wheels: no packages under {root}", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"build_wheels: {args.out} exists and is not a directory", file=sys.stderr)
        return 2
    if missing := missing_tools(not args.no_twine, args.isolation):
        print(f"build_wheels: {', '.join(missing)} not installed here; {INSTALL_HINT}", file=sys.stderr)
        return 2
    started = time.monotonic()
    outcome = build_all(packages, args.out.resolve(), isolation=args.isolation, twine=not args.no_twine)
    for problem in outcome.problems:
        print(problem, file=sys.stderr)
    took = f"{time.monotonic() - started:.0f} s"
    if outcome.problems:
        print(f"build_wheels: {len(outcome.problems)} problem(s) ({took})", file=sys.stderr)
        return 1
    checks = "check_dist" + ("" if args.no_twine else " + twine check")
    summary = f"{len(outcome.files)} files, {len(outcome.notes)} release notes in {args.out}"
    print(f"build_wheels: {summary} ({checks} OK, {took})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
