#!/usr/bin/env python3
"""Bump one package's version and open its CHANGELOG entry.

    python tools/bump_version.py kv_pool minor
    python tools/bump_version.py sagellm-core 0.2.0 --note "Add KVLayout.dtype"

``<package>`` is a short name (core, kv_pool, engines), a distribution name
or a package directory. The version lives only in
``src/sagellm/<module>/version.py`` (hatchling reads it), so that file is
rewritten, and a ``## X.Y.Z — YYYY-MM-DD`` heading is put on top of
CHANGELOG.md. Packages are versioned independently: bump only what changed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path

from repo_layout import ROOT, Package, find

VERSION_LINE = re.compile(r'^__version__\s*=\s*["\'](?P<version>\d+\.\d+\.\d+)["\'][ \t]*$', re.MULTILINE)
EXPLICIT = re.compile(r"\d+\.\d+\.\d+")
PARTS = ("major", "minor", "patch")
PLACEHOLDER_NOTE = "(describe the changes)"


class BumpError(Exception):
    """The bump cannot be applied (unknown package, bad version, version going backwards)."""


def parse(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def next_version(current: str, how: str) -> str:
    """``how`` is major/minor/patch or an explicit X.Y.Z that must be newer than ``current``."""
    major, minor, patch = parse(current)
    if how == "major":
        return f"{major + 1}.0.0"
    if how == "minor":
        return f"{major}.{minor + 1}.0"
    if how == "patch":
        return f"{major}.{minor}.{patch + 1}"
    if not EXPLICIT.fullmatch(how):
        raise BumpError(f"'{how}' is neither major, minor, patch nor a version X.Y.Z")
    if parse(how) <= parse(current):
        raise BumpError(f"new version {how} must be greater than the current {current}")
    return how


def read_version(pkg: Package) -> str:
    if not pkg.version_file.is_file():
        raise BumpError(f"{pkg.rel}: no {pkg.version_file.relative_to(pkg.path).as_posix()}")
    match = VERSION_LINE.search(pkg.version_file.read_text(encoding="utf-8"))
    if match is None:
        raise BumpError(f"{pkg.version_file}: no line '__version__ = \"X.Y.Z\"'")
    return match.group("version")


def write_version(pkg: Package, new: str) -> None:
    text = pkg.version_file.read_text(encoding="utf-8")
    pkg.version_file.write_text(VERSION_LINE.sub(f'__version__ = "{new}"', text, count=1), encoding="utf-8")


def add_changelog_entry(path: Path, distribution: str, version: str, date: dt.date, notes: list[str]) -> None:
    """Insert the new heading above the newest entry (or after the title of a new file)."""
    heading = f"## {version} — {date.isoformat()}"
    body = "\n".join(f"- {note}" for note in (notes or [PLACEHOLDER_NOTE]))
    entry = f"{heading}\n{body}\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else f"# Changelog — {distribution}\n"
    if re.search(rf"^## {re.escape(version)}\b", text, re.MULTILINE):
        raise BumpError(f"{path}: already has an entry for {version}")
    first = re.search(r"^## ", text, re.MULTILINE)
    if first is None:
        new_text = text.rstrip("\n") + "\n\n" + entry
    else:
        new_text = text[: first.start()] + entry + "\n" + text[first.start() :]
    path.write_text(new_text, encoding="utf-8")


def bump(root: Path, package: str, how: str, date: dt.date | None = None, notes: list[str] | None = None) -> str:
    """Apply the bump; returns the new version."""
    try:
        pkg = find(package, root)
    except KeyError as exc:
        raise BumpError(str(exc.args[0])) from None
    current = read_version(pkg)
    new = next_version(current, how)
    add_changelog_entry(pkg.path / "CHANGELOG.md", pkg.distribution(), new, date or dt.date.today(), notes or [])
    write_version(pkg, new)
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("package", help="short name (core, kv_pool, engines), distribution name or directory")
    parser.add_argument("how", help="major | minor | patch | X.Y.Z")
    parser.add_argument("--note", action="append", default=[], help="CHANGELOG bullet (repeatable)")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=None, help="entry date (default: today)")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        pkg = find(args.package, root)
        old = read_version(pkg)
        new = bump(root, args.package, args.how, args.date, args.note)
    except KeyError as exc:
        print(f"bump_version: {exc.args[0]}", file=sys.stderr)
        return 1
    except BumpError as exc:
        print(f"bump_version: {exc}", file=sys.stderr)
        return 1
    print(f"{pkg.distribution()} {old} -> {new} ({pkg.version_file.relative_to(root).as_posix()}, CHANGELOG.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
