"""new_package renders a complete, buildable package that every other tool accepts."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, MakePackage

import check_dist
import check_imports
import new_package
from repo_layout import discover, find

DAY = dt.date(2027, 3, 4)
EXPECTED = [
    "CHANGELOG.md",
    "README.md",
    "benchmarks/.gitignore",
    "benchmarks/bench_radix_tree.py",
    "pyproject.toml",
    "src/sagellm/radix_tree/__init__.py",
    "src/sagellm/radix_tree/py.typed",
    "src/sagellm/radix_tree/version.py",
    "tests/test_import.py",
]


@pytest.fixture
def scaffolded(repo: Path) -> Path:
    new_package.scaffold(repo, "direction_2_kv_scheduling", "radix_tree", DAY)
    return repo / "direction_2_kv_scheduling" / "radix_tree"


def test_renders_every_template_file(scaffolded: Path) -> None:
    written = sorted(p.relative_to(scaffolded).as_posix() for p in scaffolded.rglob("*") if p.is_file())
    assert written == EXPECTED
    for path in scaffolded.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "${" not in text and "__module__" not in text, path
    assert not (scaffolded / "src/sagellm/__init__.py").exists()


def test_metadata_follows_the_package_layout(scaffolded: Path) -> None:
    meta = tomllib.loads((scaffolded / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "sagellm-radix-tree"
    assert meta["project"]["dynamic"] == ["version"]
    assert meta["project"]["requires-python"] == ">=3.10"
    assert meta["project"]["license"] == "Apache-2.0"
    assert meta["project"]["dependencies"] == ["sagellm-core>=0.1"]
    assert meta["project"]["optional-dependencies"]["test"] == ["pytest>=7"]
    assert meta["tool"]["hatch"]["version"]["path"] == "src/sagellm/radix_tree/version.py"
    assert meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/sagellm"]
    assert (scaffolded / "CHANGELOG.md").read_text().splitlines()[2] == "## 0.1.0 — 2027-03-04"
    assert (
        "pip install -c constraints.txt ./sageLLM-core ./direction_2_kv_scheduling/radix_tree"
        in (scaffolded / "README.md").read_text()
    )


def test_is_discovered_and_passes_the_import_check(repo: Path, scaffolded: Path) -> None:
    assert find("radix_tree", repo).path == scaffolded
    assert "radix_tree" in [p.short for p in discover(repo)]
    assert check_imports.check(repo) == []


def test_entry_point_hint_comes_from_the_core_registry(repo: Path) -> None:
    shutil.copytree(REPO / "sageLLM-core/src", repo / "sageLLM-core/src", dirs_exist_ok=True)
    new_package.scaffold(repo, "2", "kv_pool_v2", DAY)  # no registry group: generic hint
    generic = (repo / "direction_2_kv_scheduling/kv_pool_v2/pyproject.toml").read_text()
    assert '# [project.entry-points."sagellm.<group>"]' in generic
    assert new_package.registry_group(repo, "prefix_cache") == ("prefix_index", "sagellm.prefix_index", "PrefixIndex")


def test_wheel_builds_and_passes_check_dist(scaffolded: Path, tmp_path: Path) -> None:
    hatchling_build = pytest.importorskip("hatchling.build")
    out = tmp_path / "dist"
    out.mkdir()
    cwd = Path.cwd()
    os.chdir(scaffolded)
    try:
        wheel = hatchling_build.build_wheel(str(out))
        sdist = hatchling_build.build_sdist(str(out))
    finally:
        os.chdir(cwd)
    assert wheel == "sagellm_radix_tree-0.1.0-py3-none-any.whl"
    files, problems = check_dist.check([out / wheel, out / sdist])
    assert problems == [] and len(files) == 2


def test_rendered_test_and_benchmark_run(scaffolded: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(scaffolded / "src")}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(scaffolded / "tests")],
        cwd=scaffolded,
        env=env,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    out = tmp_path / "bench"
    bench = subprocess.run(
        [sys.executable, "benchmarks/bench_radix_tree.py", "--quick", "--out", str(out)],
        cwd=scaffolded,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bench.returncode == 0, bench.stderr
    assert sorted(p.name for p in out.iterdir()) == ["bench_radix_tree.json", "bench_radix_tree.md"]


@pytest.mark.parametrize(
    ("direction", "module", "message"),
    [
        ("direction_2_kv_scheduling", "alpha", "already exists"),
        ("direction_5_new", "beta", "module names are unique"),
        ("direction_2_kv_scheduling", "Bad-Name", "lowercase Python identifier"),
        ("direction_2_kv_scheduling", "class", "lowercase Python identifier"),
        ("direction_2_kv_scheduling", "core", "reserved"),
        ("kv_scheduling", "gamma", "must look like direction_<n>_<topic>"),
        ("7", "gamma", "must match exactly one directory"),
    ],
)
def test_refusals(repo: Path, direction: str, module: str, message: str) -> None:
    with pytest.raises(new_package.ScaffoldError, match=message):
        new_package.scaffold(repo, direction, module, DAY)


def test_cli_creates_a_new_direction(repo: Path, make_package: MakePackage, capsys: pytest.CaptureFixture[str]) -> None:
    assert new_package.main(["direction_3_acceleration", "sparsity", "--root", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "created direction_3_acceleration/sparsity/pyproject.toml" in out
    assert "nox -s test-sparsity" in out
    assert new_package.main(["direction_3_acceleration", "sparsity", "--root", str(repo)]) == 1
