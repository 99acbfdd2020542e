"""build_wheels.py: one command gives every wheel, sdist and release note; pip then installs by name.

Synthetic tests build the conftest monorepo; the slow ones build this
repository and install from the result in fresh venvs, as the root README
tells a user to.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, MakePackage, write

import build_wheels
import release_notes
from repo_layout import find

CHANGELOG = """\
# Changelog — sagellm-alpha

## Unreleased (documentation only)
- Not part of a release.

## 0.2.0 — 2026-12-01
- Alpha grows.
  Second line.

## 0.1.0 — 2026-11-24
- First.
"""


def needs_build_tools(twine: bool = False) -> None:
    for name in ("build", "hatchling", *(["twine"] if twine else [])):
        pytest.importorskip(name)


def test_release_notes_are_the_entry_of_the_shipped_version(repo: Path, make_package: MakePackage) -> None:
    make_package("direction_2_kv_scheduling/alpha", "alpha", version="0.2.0")
    write(repo / "direction_2_kv_scheduling/alpha/CHANGELOG.md", CHANGELOG)
    notes = release_notes.release_notes(find("alpha", repo))
    assert (notes.version, notes.date, notes.tag) == ("0.2.0", "2026-12-01", "sagellm-alpha-v0.2.0")
    assert notes.body == "- Alpha grows.\n  Second line."  # Unreleased skipped, stops at the next heading
    assert notes.markdown().startswith("# sagellm-alpha 0.2.0 — 2026-12-01\n\n- Alpha grows.")


def test_stale_changelog_is_reported(repo: Path, make_package: MakePackage) -> None:
    make_package("direction_2_kv_scheduling/alpha", "alpha", version="0.3.0")
    write(repo / "direction_2_kv_scheduling/alpha/CHANGELOG.md", CHANGELOG)
    with pytest.raises(release_notes.ReleaseNotesError, match="newest entry is 0.2.0 but version.py says 0.3.0"):
        release_notes.release_notes(find("alpha", repo))


def test_builds_checks_and_writes_notes(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    needs_build_tools()
    out = tmp_path_factory.mktemp("dist")
    (out / "sagellm_alpha-0.0.1-py3-none-any.whl").write_bytes(b"stale")  # an older build is replaced
    assert build_wheels.main(["--root", str(repo), "--out", str(out), "--no-twine"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "sagellm_alpha-0.0.1-py3-none-any.whl" not in names
    for dist in ("sagellm_core", "sagellm_alpha", "sagellm_beta", "sagellm_engines"):
        assert f"{dist}-0.1.0-py3-none-any.whl" in names and f"{dist}-0.1.0.tar.gz" in names
    assert (out / "sagellm-beta-0.1.0.release-notes.md").read_text().startswith("# sagellm-beta 0.1.0 — 2026-11-24")


def test_a_broken_package_fails_the_run(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    needs_build_tools()
    write(repo / "direction_2_kv_scheduling/beta/src/sagellm/__init__.py", "")  # breaks the namespace
    out = tmp_path_factory.mktemp("dist")
    assert build_wheels.main(["--root", str(repo), "--out", str(out), "--no-twine", "--package", "beta"]) == 1


def test_bad_input_exits_2(repo: Path, tmp_path: Path) -> None:
    assert build_wheels.main(["--root", str(repo), "--package", "nope"]) == 2
    not_a_dir = write(tmp_path / "file", "")
    assert build_wheels.main(["--root", str(repo), "--out", str(not_a_dir)]) == 2


# --------------------------------------------------------------------------- install by name (slow)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every package of this repository, built and checked once for the install tests (~15 s)."""
    needs_build_tools(twine=True)
    out = tmp_path_factory.mktemp("repo-dist")
    assert build_wheels.main(["--out", str(out)]) == 0
    return out


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin"


def pip_install(bin_dir: Path, dist: Path, requirement: str) -> str:
    """The README's command; third-party dependencies come from the configured index or cache."""
    command = [str(bin_dir / "python"), "-m", "pip", "install", "--no-compile", "--find-links", str(dist)]
    command += ["-c", str(REPO / "constraints.txt"), requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def sagellm_distributions(bin_dir: Path) -> set[str]:
    listing = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    )
    return {line.split("==")[0] for line in listing.stdout.splitlines() if line.startswith("sagellm")}


@pytest.mark.slow
def test_prefix_cache_installs_by_name_with_core_only(dist: Path, tmp_path: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    log = pip_install(bin_dir, dist, "sagellm-prefix-cache")
    assert sagellm_distributions(bin_dir) == {"sagellm-core", "sagellm-prefix-cache"}
    for name in ("sagellm_core-", "sagellm_prefix_cache-"):  # ours, from dist/, not some index
        assert any(name in line and str(dist) in line for line in log.splitlines()), log
    imported = subprocess.run([str(bin_dir / "python"), "-c", "import sagellm.prefix_cache"], capture_output=True)
    assert imported.returncode == 0, imported.stderr


@pytest.mark.slow
def test_engines_all_is_the_whole_engine(dist: Path, tmp_path: Path) -> None:
    """~30 s: torch comes from the machine's wheel cache or index, pinned by constraints.txt."""
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the machine's CPU torch wheel is cp311; elsewhere pip would fetch a CUDA build")
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, dist, "sagellm-engines[all]")
    expected = {pkg.distribution() for pkg in build_wheels.discover(REPO)}
    assert sagellm_distributions(bin_dir) == expected
    info = subprocess.run([str(bin_dir / "sagellm"), "info"], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert all(name in info.stdout for name in expected)
