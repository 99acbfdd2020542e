"""The noxfile gives a package added later its sessions, with no edit to the noxfile."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, MakePackage, write


def list_sessions(root: Path, *select: str) -> dict[str, list[str]]:
    """Sessions ``nox`` would run in ``root`` (default selection: the ci tag), with their tags."""
    if not (root / "noxfile.py").exists():
        shutil.copy(REPO / "noxfile.py", root / "noxfile.py")
        shutil.copytree(REPO / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__", "tests"))
    listing = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json", "-f", str(root / "noxfile.py"), *select],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 0, listing.stderr
    return {s["session"]: s.get("tags", []) for s in json.loads(listing.stdout)}


def test_sessions_follow_the_tree(repo: Path, make_package: MakePackage) -> None:
    pytest.importorskip("nox")
    write(repo / "direction_2_kv_scheduling/alpha/benchmarks/bench_alpha.py", "")
    make_package("direction_3_acceleration/sparsity", "sparsity")  # "added later"
    sessions = list_sessions(repo)
    for name in ("test-core", "test-alpha", "test-beta", "test-sparsity", "test-engines", "test-tools"):
        assert "ci" in sessions[name] and "test" in sessions[name], name
    assert sessions["bench-alpha"] == ["ci", "bench"]
    assert "bench-beta" not in sessions  # no benchmarks/bench_*.py
    assert "ci" in sessions["lint"] and "ci" in sessions["build"]
    assert "format" not in sessions  # not part of CI ...
    assert list_sessions(repo, "-s", "format") == {"format": ["fix"]}  # ... but there on request


def test_missing_engines_still_has_a_session(tmp_path: Path, make_package: MakePackage) -> None:
    pytest.importorskip("nox")
    make_package("sageLLM-core", "core")
    assert "test-engines" in list_sessions(tmp_path)


def test_bench_arguments() -> None:
    pytest.importorskip("nox")
    sys.path.insert(0, str(REPO))
    try:
        import noxfile
    finally:
        sys.path.remove(str(REPO))
    out = Path("/tmp/out")
    assert noxfile.bench_arguments([], out) == ["--quick", "--out", "/tmp/out"]
    assert noxfile.bench_arguments(["--full"], out) == []
    assert noxfile.bench_arguments(["--full", "--out", "x"], out) == ["--out", "x"]
    assert noxfile.bench_arguments(["--seed", "3"], out) == ["--quick", "--seed", "3", "--out", "/tmp/out"]
    assert noxfile.bench_arguments(["--out=r"], out) == ["--quick", "--out=r"]
