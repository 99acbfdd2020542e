"""A patched LMDeploy 0.11.0 tree for the adapter's opt-in test, and a pytest run inside it.

Sources: ``SAGELLM_LMDEPLOY_SRC`` (a dir holding ``lmdeploy/``) or the wheel
tools/tests/test_lmdeploy_patches.py caches in ``SAGELLM_CACHE_DIR``
(~/.cache/sagellm); nothing is downloaded here. LMDeploy's paging tests come
from ``SAGELLM_LMDEPLOY_TESTS`` or the submodule; without them only sageLLM's
hook and adapter tests run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOOK_TESTS = REPO / "third_party/tests/lmdeploy_hooks"
VERSION = "0.11.0"


def patched_tree(tmp_path: Path) -> Path:
    """LMDeploy's Python sources under ``tmp_path/tree``, patched; skip when there are none here."""
    tree = tmp_path / "tree"
    given = os.environ.get("SAGELLM_LMDEPLOY_SRC")
    cache = Path(os.environ.get("SAGELLM_CACHE_DIR", Path.home() / ".cache/sagellm")) / f"lmdeploy-{VERSION}"
    wheels = sorted(cache.glob(f"lmdeploy-{VERSION}-*.whl"))
    if given and Path(given, "lmdeploy").is_dir():
        shutil.copytree(
            Path(given, "lmdeploy"), tree / "lmdeploy", ignore=shutil.ignore_patterns("*.so", "__pycache__")
        )
    elif wheels:
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in wheel.namelist():
                if name.startswith("lmdeploy/") and name.endswith(".py"):
                    (tree / name).parent.mkdir(parents=True, exist_ok=True)
                    (tree / name).write_bytes(wheel.read(name))
    else:
        pytest.skip(
            f"no LMDeploy sources: set SAGELLM_LMDEPLOY_SRC or run tools/tests/test_lmdeploy_patches.py ({cache})"
        )
    script = REPO / "third_party/patches/lmdeploy/apply_patches.sh"
    subprocess.run(["bash", str(script), str(tree)], check=True, capture_output=True, timeout=120)
    return tree


def run_in_lmdeploy(python: str, tree: Path) -> subprocess.CompletedProcess[str]:
    """sageLLM's hook tests and adapter tests, plus LMDeploy's paging tests with the adapter plugged in."""
    shutil.copytree(HOOK_TESTS, tree / "tests/sagellm_hooks")
    paths = ["tests/sagellm_hooks"]
    given = os.environ.get("SAGELLM_LMDEPLOY_TESTS")
    paging = Path(given) if given else REPO / "third_party/lmdeploy/tests"
    if (paging / "pytorch/paging").is_dir():
        shutil.copytree(paging / "pytorch/paging", tree / "tests/paging_sagellm")
        shutil.copy(HOOK_TESTS / "sagellm_plugged_conftest.py", tree / "tests/paging_sagellm/conftest.py")
        paths.append("tests/paging_sagellm")
    overlay = subprocess.run(
        [sys.executable, str(HOOK_TESTS / "sagellm_overlay.py"), str(REPO), str(tree / "sagellm-overlay")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), overlay])}
    args = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tree)]
    return subprocess.run([*args, *paths], cwd=tree, env=env, capture_output=True, text=True, timeout=600)
