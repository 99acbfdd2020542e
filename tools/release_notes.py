"""A package's release notes: the CHANGELOG entry of the version it ships.

Shared by ``build_wheels.py`` (writes ``dist/<dist>-<version>.release-notes.md``)
and ``polyrepo.py`` (the message of each ``<dist>-v<version>`` tag), so a
release and its tag say the same thing.

The entry is looked up by version, not simply taken from the top: CHANGELOGs
here keep ``## Unreleased`` sections above or between released entries, and
those are not part of any release. A package whose newest versioned entry is
not its version.py version has a stale CHANGELOG (``bump_version.py`` writes
both together), which is reported instead of shipping the wrong notes.

Stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bump_version import VERSION_LINE
from repo_layout import Package

# "## 0.3.1 — 2026-12-06" (bump_version.py writes an em dash; a hyphen is accepted too).
HEADING = re.compile(r"^## +(?P<version>\d+\.\d+\.\d+)\b(?:\s*[—–-]\s*(?P<date>\S+))?.*$", re.MULTILINE)
ANY_HEADING = re.compile(r"^## ", re.MULTILINE)


class ReleaseNotesError(Exception):
    """The notes cannot be taken from the tree (no version, no CHANGELOG entry, stale CHANGELOG)."""


@dataclass(frozen=True, slots=True)
class ReleaseNotes:
    """One package release as a human reads it: name, version, date and the CHANGELOG body."""

    distribution: str
    version: str
    date: str | None
    body: str

    @property
    def tag(self) -> str:
        """The git tag of this release in the package's own repository (``sagellm-kv-pool-v0.2.2``)."""
        return f"{self.distribution}-v{self.version}"

    @property
    def filename(self) -> str:
        return f"{self.distribution}-{self.version}.release-notes.md"

    def markdown(self) -> str:
        dated = f" — {self.date}" if self.date else ""
        return f"# {self.distribution} {self.version}{dated}\n\n{self.body}\n"


def package_version(pkg: Package) -> str:
    """The version hatchling will build, read from ``src/sagellm/<module>/version.py``."""
    if not pkg.version_file.is_file():
        raise ReleaseNotesError(f"{pkg.rel}: no {pkg.version_file.relative_to(pkg.path).as_posix()}")
    match = VERSION_LINE.search(pkg.version_file.read_text(encoding="utf-8"))
    if match is None:
        raise ReleaseNotesError(f"{pkg.version_file}: no line '__version__ = \"X.Y.Z\"'")
    return match.group("version")


def entry(changelog: str, version: str) -> tuple[str | None, str] | None:
    """``(date, body)`` of the ``## <version>`` entry, or ``None`` when there is none.

    The body runs to the next ``## `` heading of any kind (an Unreleased
    section included), without surrounding blank lines.
    """
    for match in HEADING.finditer(changelog):
        if match.group("version") != version:
            continue
        following = ANY_HEADING.search(changelog, match.end())
        body = changelog[match.end() : following.start() if following else len(changelog)]
        return match.group("date"), body.strip("\n")
    return None


def newest_version(changelog: str) -> str | None:
    """The version of the first versioned heading (Unreleased sections skipped)."""
    match = HEADING.search(changelog)
    return match.group("version") if match else None


def release_notes(pkg: Package) -> ReleaseNotes:
    """The notes of the version ``pkg`` ships; ``ReleaseNotesError`` says what to fix."""
    version = package_version(pkg)
    path = pkg.path / "CHANGELOG.md"
    if not path.is_file():
        raise ReleaseNotesError(f"{pkg.rel}: no CHANGELOG.md")
    text = path.read_text(encoding="utf-8")
    newest = newest_version(text)
    if newest != version:
        raise ReleaseNotesError(
            f"{pkg.rel}/CHANGELOG.md: newest entry is {newest or 'missing'} but version.py says {version} "
            f"(tools/bump_version.py writes both)"
        )
    found = entry(text, version)
    assert found is not None  # newest_version() matched this heading
    date, body = found
    if not body.strip():
        raise ReleaseNotesError(f"{pkg.rel}/CHANGELOG.md: the {version} entry is empty")
    return ReleaseNotes(distribution=pkg.distribution(), version=version, date=date, body=body)


def write(notes: ReleaseNotes, out: Path) -> Path:
    path = out / notes.filename
    path.write_text(notes.markdown(), encoding="utf-8")
    return path
