"""check_dist accepts a proper namespace wheel and rejects each way a wheel can break the namespace."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

import check_dist


def wheel(tmp_path: Path, name: str, files: list[str], requires: list[str] | None = None) -> Path:
    dist = name.replace("-", "_")
    path = tmp_path / f"{dist}-0.1.0-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.3\nName: {name}\nVersion: 0.1.0\n"
    metadata += "".join(f"Requires-Dist: {req}\n" for req in requires or [])
    with zipfile.ZipFile(path, "w") as zf:
        for file in files:
            zf.writestr(file, "")
        zf.writestr(f"{dist}-0.1.0.dist-info/METADATA", metadata)
        zf.writestr(f"{dist}-0.1.0.dist-info/RECORD", "")
    return path


def sdist(tmp_path: Path, files: list[str]) -> Path:
    path = tmp_path / "sagellm_x-0.1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for file in files:
            info = tarfile.TarInfo(f"sagellm_x-0.1.0/{file}")
            tf.addfile(info, io.BytesIO(b""))
    return path


GOOD = ["sagellm/kv_pool/__init__.py", "sagellm/kv_pool/py.typed", "sagellm/kv_pool/version.py"]


def test_good_wheel_and_sdist_pass(tmp_path: Path) -> None:
    wheel(tmp_path, "sagellm-kv-pool", GOOD, ["sagellm-core>=0.1", "torch>=2.4", "pytest>=7; extra == 'test'"])
    sdist(tmp_path, ["pyproject.toml", "src/sagellm/kv_pool/__init__.py"])
    files, problems = check_dist.check([tmp_path])
    assert len(files) == 2
    assert problems == []


def test_namespace_init_in_wheel_fails(tmp_path: Path) -> None:
    path = wheel(tmp_path, "sagellm-kv-pool", [*GOOD, "sagellm/__init__.py"])
    assert check_dist.main([str(path)]) == 1
    assert any("ships sagellm/__init__.py" in p for p in check_dist.check_wheel(path))


def test_sibling_dependency_fails_but_engines_may_depend_on_modules(tmp_path: Path) -> None:
    bad = wheel(tmp_path, "sagellm-prefix-cache", GOOD, ["sagellm-core>=0.1", "sagellm_kv_pool>=0.1"])
    assert any("requires 'sagellm_kv_pool>=0.1'" in p for p in check_dist.check_wheel(bad))
    engines = wheel(
        tmp_path, "sagellm-engines", ["sagellm/engines/__init__.py", "sagellm/engines/py.typed"], ["sagellm-kv-pool"]
    )
    assert check_dist.check_wheel(engines) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["sagellm/kv_pool/__init__.py"], "missing sagellm/kv_pool/py.typed"),
        ([*GOOD, "sagellm/prefix_cache/__init__.py"], "exactly one sagellm/<module>/"),
        ([*GOOD, "tests/test_x.py"], "unexpected top-level entries ['tests']"),
    ],
)
def test_wheel_shape_problems(tmp_path: Path, files: list[str], expected: str) -> None:
    problems = check_dist.check_wheel(wheel(tmp_path, "sagellm-kv-pool", files))
    assert any(expected in p for p in problems), problems


def test_bad_sdist_and_empty_dir_fail(tmp_path: Path) -> None:
    path = sdist(tmp_path, ["src/sagellm/__init__.py"])
    problems = check_dist.check_sdist(path)
    assert any("no pyproject.toml" in p for p in problems)
    assert any("ships src/sagellm/__init__.py" in p for p in problems)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_dist.main([str(empty)]) == 1
