"""The JSON report: one document per ``sagellm bench`` invocation, read back by ``sagellm ci-gate``.

Bump ``SCHEMA_VERSION`` when a field changes meaning or moves; the gate
refuses to compare reports of different versions. Adding fields is not a
change of version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sagellm.engines.bench.backends.base import TargetInfo
from sagellm.engines.bench.runner import RunResult
from sagellm.engines.bench.sweep import SweepResult

SCHEMA_VERSION = 1
JSON_NAME = "bench.json"
MARKDOWN_NAME = "bench.md"


def build_report(
    results: Sequence[RunResult],
    summary: dict[str, Any],
    target: TargetInfo,
    environment: dict[str, Any],
    config: dict[str, Any],
    notes: dict[str, str],
    sweep: SweepResult | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "sagellm bench",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": target.model,
        "environment": environment,
        "target": {
            "backend": target.backend,
            "model": target.model,
            "device": target.device,
            "dtype": target.dtype,
            "max_model_len": target.max_model_len,
            "world_size": target.world_size,
            **target.settings,
        },
        "config": config,
        "notes": notes,
        "runs": [result.to_json() for result in results],
        "summary": summary,
    }
    if sweep is not None:
        report["sweep"] = sweep.to_json()
    return report


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def write_json_and_markdown(report: dict[str, Any], markdown: str, out: Path, stem: str) -> None:
    """``out/<stem>.json`` and ``out/<stem>.md``; the Markdown also goes to stdout (benchmark scripts)."""
    write_json(report, out / f"{stem}.json")
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)


def read_report(path: Path) -> dict[str, Any]:
    """A report from disk; ValueError with a one-line reason when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict) or "schema_version" not in data or not isinstance(data.get("runs"), list):
        raise ValueError(f"{path} is not a sagellm bench report (no schema_version / runs)")
    return data
