"""bump_version rewrites version.py and opens a CHANGELOG entry, and refuses nonsense."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import MakePackage

import bump_version

DAY = dt.date(2027, 1, 2)


@pytest.fixture
def pkg(tmp_path: Path, make_package: MakePackage) -> Path:
    make_package("sageLLM-core", "core")
    path: Path = make_package("direction_2_kv_scheduling/kv_pool", "kv_pool", version="1.4.2")
    return path


def version_of(pkg: Path) -> str:
    namespace: dict[str, str] = {}
    exec((pkg / "src/sagellm/kv_pool/version.py").read_text(), namespace)
    return namespace["__version__"]


@pytest.mark.parametrize(
    ("how", "expected"),
    [("patch", "1.4.3"), ("minor", "1.5.0"), ("major", "2.0.0"), ("1.10.0", "1.10.0")],
)
def test_bump_rewrites_version_file(tmp_path: Path, pkg: Path, how: str, expected: str) -> None:
    assert bump_version.bump(tmp_path, "kv_pool", how, DAY) == expected
    assert version_of(pkg) == expected
    text = (pkg / "src/sagellm/kv_pool/version.py").read_text()
    assert text.startswith('"""Version."""\n') and text.endswith("\n")  # the rest of the file is kept


def test_changelog_gets_a_heading_above_the_previous_entry(tmp_path: Path, pkg: Path) -> None:
    bump_version.bump(tmp_path, "kv_pool", "minor", DAY, notes=["Add tiering.", "Faster free()."])
    changelog = (pkg / "CHANGELOG.md").read_text()
    assert changelog.startswith(
        "# Changelog — sagellm-kv-pool\n\n## 1.5.0 — 2027-01-02\n- Add tiering.\n- Faster free().\n"
    )
    assert changelog.index("## 1.5.0") < changelog.index("## 1.4.2 — 2026-11-24")


def test_changelog_placeholder_and_new_file(tmp_path: Path, pkg: Path) -> None:
    (pkg / "CHANGELOG.md").unlink()
    bump_version.bump(tmp_path, "kv_pool", "patch", DAY)
    assert (pkg / "CHANGELOG.md").read_text() == (
        "# Changelog — sagellm-kv-pool\n\n## 1.4.3 — 2027-01-02\n- (describe the changes)\n"
    )


@pytest.mark.parametrize("name", ["kv_pool", "sagellm-kv-pool", "direction_2_kv_scheduling/kv_pool"])
def test_package_can_be_named_several_ways(tmp_path: Path, pkg: Path, name: str) -> None:
    assert bump_version.bump(tmp_path, name, "patch", DAY) == "1.4.3"


@pytest.mark.parametrize(
    ("how", "message"), [("1.4.2", "must be greater"), ("1.0.0", "must be greater"), ("v2", "neither")]
)
def test_bad_targets_are_refused_and_nothing_changes(tmp_path: Path, pkg: Path, how: str, message: str) -> None:
    before = (pkg / "CHANGELOG.md").read_text()
    with pytest.raises(bump_version.BumpError, match=message):
        bump_version.bump(tmp_path, "kv_pool", how, DAY)
    assert version_of(pkg) == "1.4.2"
    assert (pkg / "CHANGELOG.md").read_text() == before


def test_cli(tmp_path: Path, pkg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bump_version.main(["kv_pool", "minor", "--root", str(tmp_path), "--date", "2027-01-02"]) == 0
    assert "sagellm-kv-pool 1.4.2 -> 1.5.0" in capsys.readouterr().out
    assert bump_version.main(["nope", "minor", "--root", str(tmp_path)]) == 1
    assert "no package named 'nope' (known: core, kv_pool)" in capsys.readouterr().err
    assert bump_version.main(["kv_pool", "1.5.0", "--root", str(tmp_path)]) == 1
    assert "must be greater than the current 1.5.0" in capsys.readouterr().err
