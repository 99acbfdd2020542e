"""Make sageLLM importable, entry points included, in an interpreter that only has LMDeploy's dependencies.

The adapter (sagellm.engines.lmdeploy) finds its modules through the
registry, i.e. through installed entry points. Rather than installing
sageLLM into LMDeploy's interpreter, this writes a bare ``*.dist-info``
(METADATA + entry_points.txt from each package's pyproject.toml) per
package into ``dest`` and returns the path entries that make the sources
and those entry points visible (``PYTHONPATH``). That interpreter still
needs sageLLM core's third-party dependencies (pydantic-settings, pyyaml).

    python sagellm_overlay.py REPO DEST   # prints the PYTHONPATH entries, os.pathsep-joined
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

# Packages the adapter may build from a config, besides core and engines (which hold no entry points it needs).
PACKAGES = (
    "sageLLM-core",
    "engines",
    "direction_2_kv_scheduling/prefix_cache",
    "direction_2_kv_scheduling/eviction_policy",
    "direction_2_kv_scheduling/scheduler_ir",
    "direction_2_kv_scheduling/lifetime_predictor",
    "direction_1_communication/collective_ops",
)


def write_overlay(repo: Path, dest: Path) -> list[str]:
    """Write one dist-info per package under ``dest``; return ``[dest, <package>/src, ...]``."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = [str(dest)]
    for rel in PACKAGES:
        project = tomllib.loads((repo / rel / "pyproject.toml").read_text())["project"]
        name = project["name"].replace("-", "_")
        info = dest / f"{name}-0+overlay.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: 0+overlay\n")
        lines = []
        for group, entries in project.get("entry-points", {}).items():
            lines.append(f"[{group}]")
            lines.extend(f"{key} = {value}" for key, value in entries.items())
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        paths.append(str(repo / rel / "src"))
    return paths


if __name__ == "__main__":
    print(os.pathsep.join(write_overlay(Path(sys.argv[1]), Path(sys.argv[2]))))
