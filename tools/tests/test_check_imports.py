"""check_imports must catch every way a module can reach a sibling, and stay quiet otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO, write

import check_imports
from repo_layout import discover

ALPHA = "direction_2_kv_scheduling/alpha/src/sagellm/alpha"


def run(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = check_imports.main(["--root", str(root)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_clean_repo_passes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run(repo, capsys)
    assert code == 0, output
    assert "OK (4 packages: core, alpha, beta, engines)" in output


@pytest.mark.parametrize(
    "source",
    [
        "import sagellm.beta\n",
        "import sagellm.beta.sub as b\n",
        "from sagellm.beta import Thing\n",
        "from sagellm.beta.sub import Thing\n",
        "from sagellm import beta\n",
        "from sagellm import core, beta\n",
        "def lazy():\n    import sagellm.beta\n",
        "import importlib\nimportlib.import_module('sagellm.beta')\n",
        "__import__('sagellm.engines')\n",
    ],
)
def test_sibling_import_in_module_fails(repo: Path, capsys: pytest.CaptureFixture[str], source: str) -> None:
    planted = write(repo / ALPHA / "planted.py", "from __future__ import annotations\n\n" + source)
    code, output = run(repo, capsys)
    assert code == 1
    line = 2 + source.count("\n")  # the offending statement is the last line written
    assert f"{ALPHA}/planted.py:{line}:" in output
    assert "problem(s)" in output
    assert planted.is_file()


def test_message_names_file_line_and_import(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo / ALPHA / "allocator.py", '"""Doc."""\n\nimport os\nfrom sagellm.beta.policy import LRU\n')
    code, output = run(repo, capsys)
    assert code == 1
    assert f"{ALPHA}/allocator.py:4: sagellm.alpha imports 'sagellm.beta.policy'" in output
    assert "only sagellm.core and third-party" in output


def test_relative_import_climbing_into_a_sibling_fails(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo / ALPHA / "sub" / "__init__.py", "")
    write(repo / ALPHA / "sub" / "deep.py", "from ...beta import Thing\n")
    code, output = run(repo, capsys)
    assert code == 1
    assert "sub/deep.py:1: sagellm.alpha imports 'sagellm.beta'" in output


def test_relative_imports_inside_the_package_pass(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo / ALPHA / "sub" / "__init__.py", "from .deep import X\nfrom .. import version\n")
    write(repo / ALPHA / "sub" / "deep.py", "from ..version import __version__ as X\nfrom . import __name__\n")
    code, output = run(repo, capsys)
    assert code == 0, output


def test_core_and_third_party_and_own_module_pass(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(
        repo / ALPHA / "ok.py",
        "import numpy\nimport sagellm\nimport sagellm.core\nfrom sagellm.core.types import Request\n"
        "from sagellm import core\nfrom sagellm.alpha.version import __version__\nimport sagellm_other\n",
    )
    code, output = run(repo, capsys)
    assert code == 0, output


def test_tests_and_benchmarks_are_scanned_too(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo / "direction_2_kv_scheduling/alpha/tests/test_x.py", "from conftest import helper\n")
    write(repo / "direction_2_kv_scheduling/alpha/benchmarks/bench_x.py", "import sagellm.beta\n")
    code, output = run(repo, capsys)
    assert code == 1
    assert "alpha/benchmarks/bench_x.py:1:" in output
    assert "tests/test_x.py" not in output


def test_core_may_not_import_modules(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo / "sageLLM-core/src/sagellm/core/bad.py", "from sagellm.alpha import X\n")
    code, output = run(repo, capsys)
    assert code == 1
    assert "sageLLM-core/src/sagellm/core/bad.py:1: sagellm.core imports 'sagellm.alpha'" in output


def test_engines_source_reaches_modules_only_through_the_registry(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo / "engines/src/sagellm/engines/assemble.py", "import sagellm.core\nfrom sagellm.beta import B\n")
    code, output = run(repo, capsys)
    assert code == 1
    assert "engines/src/sagellm/engines/assemble.py:2: sagellm.engines imports 'sagellm.beta'" in output


def test_engines_tests_and_benchmarks_may_import_modules(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo / "engines/tests/test_against_alpha.py", "import sagellm.alpha\nfrom sagellm.beta import B\n")
    write(repo / "engines/benchmarks/bench_beta.py", "from sagellm import beta\n")
    code, output = run(repo, capsys)
    assert code == 0, output


@pytest.mark.parametrize(
    "rel",
    [
        "direction_2_kv_scheduling/alpha/src/sagellm/__init__.py",
        "engines/src/sagellm/__init__.py",
        "sageLLM-core/src/sagellm/__init__.py",
        "direction_9_new/unregistered/src/sagellm/__init__.py",  # not even a package yet
    ],
)
def test_namespace_init_anywhere_fails(repo: Path, capsys: pytest.CaptureFixture[str], rel: str) -> None:
    write(repo / rel, "")
    code, output = run(repo, capsys)
    assert code == 1
    assert f"{rel}:1: 'sagellm' must stay a PEP 420 namespace package" in output


def test_syntax_error_is_reported_not_crashed(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo / ALPHA / "broken.py", "def f(:\n")
    code, output = run(repo, capsys)
    assert code == 1
    assert "broken.py:1: cannot parse" in output


def test_planted_import_in_a_copy_of_this_repository_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The check passes on the real packages and fails once one real module file gains a sibling import."""
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".git", ".nox", "__pycache__", "*.egg-info", "build", "dist", "results")
    for pkg in discover(REPO):
        shutil.copytree(pkg.path, copy / pkg.rel, ignore=ignore)
    modules = [pkg for pkg in discover(copy) if pkg.kind == "module"]
    if not modules:
        pytest.skip("no module package in this checkout yet")
    _, before = run(copy, capsys)  # the checkout may have problems of its own: `nox -s lint` reports those
    target = modules[0]
    victim = target.src_dir / "__init__.py"
    victim.write_text(victim.read_text(encoding="utf-8") + "\nfrom sagellm.engines import LLMEngine\n")
    code, output = run(copy, capsys)
    assert code == 1
    planted = f"{target.rel}/src/sagellm/{target.module}/__init__.py:"
    assert planted not in before
    assert planted in output
    assert f"sagellm.{target.module} imports 'sagellm.engines'" in output
