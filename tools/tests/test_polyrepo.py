"""polyrepo.py: split keeps each package's history and tags it; compose puts the repos back as submodules.

The synthetic tests run on a three-commit monorepo in a temp dir; the slow
test is the CI round trip on this repository: split to bare repos, compose,
clone the superproject, init its package submodules (not third_party/lmdeploy, which
needs the network), and run ``nox -s test-kv_pool`` there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, MakePackage, write

import polyrepo

IDENTITY = dict(polyrepo.FALLBACK_IDENTITY)  # test commits need an author on any machine


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **IDENTITY}
    result = subprocess.run(["git", *polyrepo.ALLOW_FILE, *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


@pytest.fixture
def monorepo(repo: Path, make_package: MakePackage) -> Path:
    """The conftest monorepo as git history: a first commit, then alpha 0.2.0 in a second one."""
    write(repo / "pyproject.toml", "[tool.ruff]\nline-length = 120\n")
    write(repo / "README.md", "# mono\n")
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "first")
    make_package("direction_2_kv_scheduling/alpha", "alpha", version="0.2.0")
    changelog = repo / "direction_2_kv_scheduling/alpha/CHANGELOG.md"
    write(changelog, "# Changelog\n\n## 0.2.0 — 2026-12-01\n- Alpha grows.\n\n## 0.1.0 — 2026-11-24\n- First.\n")
    git(repo, "commit", "--quiet", "--all", "-m", "alpha 0.2.0")
    write(repo / "README.md", "# mono, root only\n")
    git(repo, "commit", "--quiet", "--all", "-m", "root-only change")
    return repo


@pytest.fixture
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outputs go beside the monorepo, never inside its work tree."""
    return tmp_path_factory.mktemp("work")


def test_split_keeps_history_and_tags_each_version(monorepo: Path, work: Path) -> None:
    out = work / "repos"
    assert polyrepo.main(["split", "--source", str(monorepo), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.git")) == [
        "sagellm-alpha.git",
        "sagellm-beta.git",
        "sagellm-core.git",
        "sagellm-engines.git",
    ]
    alpha = out / "sagellm-alpha.git"
    assert git(alpha, "log", "--format=%s", "main").splitlines() == ["alpha 0.2.0", "first"]  # root-only commit gone
    assert git(alpha, "tag") == "sagellm-alpha-v0.2.0"
    assert "- Alpha grows." in git(alpha, "tag", "-n9")  # the CHANGELOG entry is the tag message
    top_level = git(alpha, "ls-tree", "--name-only", "main").splitlines()
    assert top_level == ["CHANGELOG.md", "README.md", "pyproject.toml", "src"]  # the package dir is the repo root
    manifest = json.loads((out / polyrepo.MANIFEST).read_text())
    assert manifest["commit"] == git(monorepo, "rev-parse", "HEAD")
    assert [r["path"] for r in manifest["repos"]][:2] == ["sageLLM-core", "direction_2_kv_scheduling/alpha"]


def test_split_selected_package_and_bad_input(monorepo: Path, work: Path) -> None:
    out = work / "one"
    assert polyrepo.main(["split", "--source", str(monorepo), "--out", str(out), "--package", "beta"]) == 0
    assert [p.name for p in out.glob("*.git")] == ["sagellm-beta.git"]
    assert polyrepo.main(["split", "--source", str(monorepo), "--out", str(out)]) == 2  # not empty
    assert polyrepo.main(["split", "--source", str(work / "none"), "--out", str(work / "x")]) == 2
    assert polyrepo.main(["split", "--source", str(monorepo), "--out", str(work / "y"), "--package", "nope"]) == 2
    assert polyrepo.main(["split", "--source", str(monorepo), "--out", str(work / "z"), "--rev", "nope"]) == 2
    assert polyrepo.main(["compose", "--split", str(work / "none"), "--out", str(work / "s")]) == 2


def test_compose_puts_every_package_back_as_a_submodule(monorepo: Path, work: Path) -> None:
    repos, superproject = work / "repos", work / "super"
    assert polyrepo.main(["split", "--source", str(monorepo), "--out", str(repos)]) == 0
    assert polyrepo.main(["compose", "--split", str(repos), "--out", str(superproject)]) == 0
    links = [line.split() for line in git(superproject, "ls-files", "--stage").splitlines()]
    gitlinks = {entry[3] for entry in links if entry[0] == "160000"}
    assert gitlinks == {"sageLLM-core", "direction_2_kv_scheduling/alpha", "direction_2_kv_scheduling/beta", "engines"}
    files = {entry[3] for entry in links if entry[0] != "160000"}
    assert files == {".gitmodules", "README.md", "pyproject.toml"}  # root files only; package files live in submodules
    url = git(superproject, "config", "--file", ".gitmodules", "submodule.engines.url")
    assert url == (repos / "sagellm-engines.git").resolve().as_uri()
    # The workflow of tools/README.md: clone, init every submodule, find the packages at their paths.
    clone = work / "clone"
    git(work, "clone", "--quiet", str(superproject), str(clone))
    git(clone, "submodule", "update", "--init", "--recursive")
    assert (clone / "direction_2_kv_scheduling/alpha/src/sagellm/alpha/version.py").read_text().count("0.2.0") == 1
    assert git(clone / "engines", "describe", "--tags") == "sagellm-engines-v0.1.0"


def test_compose_with_relative_urls(monorepo: Path, work: Path) -> None:
    repos, superproject = work / "repos", work / "super"
    polyrepo.split(monorepo, repos, names=["core"])
    polyrepo.compose(repos, superproject, url_base="../")
    assert git(superproject, "config", "--file", ".gitmodules", "submodule.sageLLM-core.url") == "../sagellm-core.git"
    assert not (superproject / "direction_2_kv_scheduling/alpha").exists()  # not split: left out, not copied as files


@pytest.mark.slow
def test_round_trip_split_compose_nox(tmp_path: Path) -> None:
    """What CI proves: the published layout runs the package tests exactly as the monorepo does (~1.5 min)."""
    pytest.importorskip("nox")
    if shutil.which("python3.11") is None:
        pytest.skip("python3.11 not on PATH (the noxfile's sessions use it)")
    repos, superproject, clone = tmp_path / "repos", tmp_path / "super", tmp_path / "sageLLM"
    assert polyrepo.main(["split", "--out", str(repos)]) == 0
    assert len(list(repos.glob("*.git"))) == len(polyrepo.discover(REPO))
    assert polyrepo.main(["compose", "--split", str(repos), "--out", str(superproject)]) == 0
    git(tmp_path, "clone", "--quiet", str(superproject), str(clone))
    # Only the package submodules: the superproject also carries the monorepo's own gitlinks
    # (third_party/lmdeploy, an upstream URL) that an offline CI machine cannot clone.
    package_paths = [repo["path"] for repo in json.loads((repos / polyrepo.MANIFEST).read_text())["repos"]]
    git(clone, "submodule", "update", "--init", "--recursive", "--", *package_paths)
    env = {**os.environ, "CI": "1"}  # the session drops its venv when it passes
    nox = subprocess.run(
        [sys.executable, "-m", "nox", "-s", "test-kv_pool"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert nox.returncode == 0, nox.stdout[-3000:] + nox.stderr[-3000:]
    assert "Session test-kv_pool was successful" in nox.stderr + nox.stdout
