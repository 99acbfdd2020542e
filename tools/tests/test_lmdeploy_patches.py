"""third_party/patches/lmdeploy: the four patches apply to LMDeploy v0.11.0, once, or not at all.

The pristine sources come from, in order: ``SAGELLM_LMDEPLOY_SRC`` (an unpacked sdist, wheel or
checkout, or a .whl / .tar.gz), the submodule third_party/lmdeploy at its pinned commit when it
is initialized, or lmdeploy 0.11.0 from PyPI downloaded once into ``SAGELLM_CACHE_DIR``
(default ~/.cache/sagellm). PyPI has no sdist of 0.11.0, only wheels, whose Python sources are
the tag's; only ``lmdeploy/**/*.py`` is unpacked. Without any of them the tests that need the
sources skip and say why.

LMDeploy's own tests/pytorch/paging and third_party/tests/lmdeploy_hooks run against the patched
tree only when ``SAGELLM_LMDEPLOY_PYTHON`` names an interpreter that has LMDeploy's
dependencies (torch, mmengine-lite, transformers, ...) and sageLLM core's (pydantic-settings,
pyyaml): they are too heavy for this venv. sageLLM's sources and entry points reach that
interpreter through PYTHONPATH (third_party/tests/lmdeploy_hooks/sagellm_overlay.py); the paging
tests then run a second time with sagellm.engines.lmdeploy installed on every scheduler.
"""

from __future__ import annotations

import hashlib
import io
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

VERSION = "0.11.0"
COMMIT = "4abccafd45daffb330cff41b3314069ce8d7f7bd"
PATCH_DIR = REPO / "third_party/patches/lmdeploy"
SCRIPT = PATCH_DIR / "apply_patches.sh"
SUBMODULE = REPO / "third_party/lmdeploy"
HOOK_TESTS = REPO / "third_party/tests/lmdeploy_hooks"
PATCHES = [
    "0001-extend-kv-manager-api.patch",
    "0002-add-prefix-reuse-hooks.patch",
    "0003-scheduler-ir-integration.patch",
    "0004-comm-backend-hooks.patch",
]
# What each patch adds, as it must read in the patched file.
HOOKS = {
    "lmdeploy/pytorch/paging/block_manager/base_block_manager.py": ["class BlockInfo", "def migrate_blocks("],
    "lmdeploy/pytorch/paging/block_trie.py": ["class PrefixReuseHook", "self.prefix_hook.store("],
    "lmdeploy/pytorch/paging/scheduler.py": ["class ExternalPlan", "def set_plan_provider("],
    "lmdeploy/pytorch/distributed.py": ["class CommBackend", "def get_comm_stats("],
}
DOWNLOAD_TIMEOUT_S = 300


def cache_dir() -> Path:
    return Path(os.environ.get("SAGELLM_CACHE_DIR", Path.home() / ".cache/sagellm")) / f"lmdeploy-{VERSION}"


def extract_archive(archive: Path, dest: Path) -> None:
    """The ``lmdeploy/**/*.py`` files of a wheel or an sdist, with ``lmdeploy/`` at ``dest``."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            for name in wheel.namelist():
                if name.startswith("lmdeploy/") and name.endswith(".py"):
                    target = dest / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(wheel.read(name))
        return
    with tarfile.open(archive) as sdist:
        for member in sdist.getmembers():
            parts = member.name.split("/", 1)  # lmdeploy-0.11.0/lmdeploy/...
            if member.isfile() and len(parts) == 2 and parts[1].startswith("lmdeploy/") and parts[1].endswith(".py"):
                data = sdist.extractfile(member)
                assert data is not None
                target = dest / parts[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data.read())


def from_submodule(dest: Path) -> bool:
    """The pinned commit's lmdeploy/ from an initialized submodule (patched or not, the commit is pristine)."""
    if not (SUBMODULE / "lmdeploy/pytorch").is_dir():
        return False
    archive = subprocess.run(["git", "-C", str(SUBMODULE), "archive", COMMIT, "lmdeploy"], capture_output=True)
    if archive.returncode != 0:
        return False
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return True


def download(into: Path) -> Path | None:
    """lmdeploy 0.11.0 from PyPI into the cache: the sdist if there is one, else a cp311 wheel."""
    into.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", f"lmdeploy=={VERSION}", "--no-deps", "-q", "-d", str(into)]
    attempts = [
        ["--no-binary", ":all:"],
        ["--only-binary", ":all:", "--python-version", "3.11", "--implementation", "cp"]
        + ["--platform", "manylinux2014_x86_64", "--abi", "cp311"],
    ]
    for extra in attempts:
        try:
            subprocess.run(pip + extra, capture_output=True, timeout=DOWNLOAD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None
        found = cached_archive(into)
        if found is not None:
            return found
    return None


def cached_archive(directory: Path) -> Path | None:
    candidates = sorted(directory.glob(f"lmdeploy-{VERSION}.tar.gz")) + sorted(
        directory.glob(f"lmdeploy-{VERSION}-*.whl")
    )
    return candidates[0] if candidates else None


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unpatched LMDeploy v0.11.0 tree (``lmdeploy/`` Python sources only)."""
    dest = tmp_path_factory.mktemp("lmdeploy-pristine")
    given = os.environ.get("SAGELLM_LMDEPLOY_SRC")
    if given:
        source = Path(given)
        if source.is_dir():
            shutil.copytree(
                source / "lmdeploy", dest / "lmdeploy", ignore=shutil.ignore_patterns("*.so", "__pycache__")
            )
        else:
            extract_archive(source, dest)
        return dest
    if from_submodule(dest):
        return dest
    archive = cached_archive(cache_dir()) or download(cache_dir())
    if archive is None:
        pytest.skip(
            f"no LMDeploy {VERSION} sources: SAGELLM_LMDEPLOY_SRC unset, submodule third_party/lmdeploy not "
            f"initialized, and `pip download lmdeploy=={VERSION}` into {cache_dir()} failed (offline?)"
        )
    extract_archive(archive, dest)
    return dest


@pytest.fixture
def tree(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lmdeploy-src"
    shutil.copytree(pristine, copy)
    return copy


def run_script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def touched_files(patch: Path) -> list[str]:
    return re.findall(r"^\+\+\+ b/(\S+)$", patch.read_text(), flags=re.MULTILINE)


# --------------------------------------------------------------------------- without the sources


def test_patch_files_are_unified_diffs_against_the_pin() -> None:
    assert sorted(p.name for p in PATCH_DIR.glob("*.patch")) == PATCHES
    for name in PATCHES:
        text = (PATCH_DIR / name).read_text()
        assert COMMIT in text.splitlines()[0], f"{name}: first line names the pinned commit"
        assert touched_files(PATCH_DIR / name), f"{name}: no '+++ b/' file"
        assert all(path.startswith("lmdeploy/pytorch/") for path in touched_files(PATCH_DIR / name))
    readme = (PATCH_DIR / "README.md").read_text()
    assert all(name in readme for name in PATCHES)


def test_not_a_source_tree_is_refused(tmp_path: Path) -> None:
    result = run_script(tmp_path)
    assert result.returncode == 2
    assert "not an LMDeploy source tree" in result.stderr
    assert run_script("--nope").returncode == 2


# --------------------------------------------------------------------------- on LMDeploy 0.11.0


def test_apply_in_order_and_the_patched_files_compile(tree: Path) -> None:
    result = run_script(tree)
    assert result.returncode == 0, result.stderr
    assert [line.split()[-1] for line in result.stdout.splitlines()[:4]] == PATCHES
    assert "4 applied now, 0 already" in result.stdout
    for name in PATCHES:
        for rel in touched_files(PATCH_DIR / name):
            py_compile.compile(str(tree / rel), cfile=str(tree / "pyc" / (rel + "c")), doraise=True)
    for rel, needles in HOOKS.items():
        text = (tree / rel).read_text()
        assert all(needle in text for needle in needles), rel


def test_reapplying_is_a_no_op(tree: Path) -> None:
    assert run_script(tree).returncode == 0
    applied = snapshot(tree)
    again = run_script(tree)
    assert again.returncode == 0, again.stderr
    assert "0 applied now, 4 already" in again.stdout
    assert snapshot(tree) == applied


def test_revert_restores_the_pristine_tree(tree: Path, pristine: Path) -> None:
    assert run_script(tree).returncode == 0
    result = run_script("--revert", tree)
    assert result.returncode == 0, result.stderr
    assert snapshot(tree) == snapshot(pristine)


def test_conflicting_tree_fails_and_is_left_unchanged(tree: Path) -> None:
    # An edit where 0004 changes distributed.py: 0001..0003 apply first, then must be taken back.
    target = tree / "lmdeploy/pytorch/distributed.py"
    line = "    dist.reduce_scatter(out, outs, group=group)\n"
    assert line in target.read_text()
    target.write_text(target.read_text().replace(line, "    dist.reduce_scatter(out, outs, group=group)  # local\n"))
    before = snapshot(tree)
    result = run_script(tree)
    assert result.returncode == 1
    assert "0004-comm-backend-hooks.patch does not apply" in result.stderr
    assert "the tree is as it was" in result.stderr
    assert snapshot(tree) == before


# --------------------------------------------------------------------------- LMDeploy's own tests


def paging_tests_dir() -> Path | None:
    given = os.environ.get("SAGELLM_LMDEPLOY_TESTS")
    for candidate in [Path(given)] if given else [SUBMODULE / "tests"]:
        if (candidate / "pytorch/paging").is_dir():
            return candidate
    return None


def lmdeploy_python() -> str:
    python = os.environ.get("SAGELLM_LMDEPLOY_PYTHON")
    if not python:
        pytest.skip("SAGELLM_LMDEPLOY_PYTHON unset: no interpreter with LMDeploy's dependencies (see tools/README.md)")
    return python


def run_lmdeploy_pytest(python: str, tree: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``python`` on the patched ``tree``, with sageLLM importable (its entry points included)."""
    overlay = subprocess.run(
        [sys.executable, str(HOOK_TESTS / "sagellm_overlay.py"), str(REPO), str(tree / "sagellm-overlay")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), overlay])}
    args = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tree)]
    return subprocess.run([*args, *paths], cwd=tree, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_lmdeploy_paging_tests_and_hook_tests_pass_on_the_patched_tree(tree: Path) -> None:
    python = lmdeploy_python()
    tests = paging_tests_dir()
    if tests is None:
        pytest.skip("no tests/pytorch/paging: set SAGELLM_LMDEPLOY_TESTS or init the submodule (not in the wheel)")
    assert run_script(tree).returncode == 0
    shutil.copytree(tests / "pytorch/paging", tree / "tests/pytorch/paging")
    shutil.copytree(HOOK_TESTS, tree / "tests/sagellm_hooks")
    result = run_lmdeploy_pytest(python, tree, "tests/pytorch/paging", "tests/sagellm_hooks")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " skipped" not in result.stdout.splitlines()[-1], result.stdout[-2000:]  # the adapter tests ran too


@pytest.mark.slow
def test_lmdeploy_paging_tests_pass_with_sagellm_modules_plugged_in(tree: Path) -> None:
    """LMDeploy's own paging tests again, every Scheduler and BlockTrie running sageLLM's modules (issue 19)."""
    python = lmdeploy_python()
    tests = paging_tests_dir()
    if tests is None:
        pytest.skip("no tests/pytorch/paging: set SAGELLM_LMDEPLOY_TESTS or init the submodule (not in the wheel)")
    assert run_script(tree).returncode == 0
    plugged = tree / "tests/pytorch/paging_sagellm"
    shutil.copytree(tests / "pytorch/paging", plugged)
    shutil.copy(HOOK_TESTS / "sagellm_plugged_conftest.py", plugged / "conftest.py")
    result = run_lmdeploy_pytest(python, tree, "tests/pytorch/paging_sagellm")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "sageLLM modules plugged in" in result.stdout and " 0 LMDeploy" not in result.stdout, result.stdout[-2000:]
