"""The square table layout nvidia-smi, npu-smi and xpu-smi share: a header of column names,
then one row per entity: its name, one label per column, then affinity columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sagellm.topology.errors import TopologyParseError
from sagellm.topology.link_labels import classify
from sagellm.topology.link_matrix import LinkMatrix

AFFINITY_COLUMNS = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
Splitter = Callable[[str], list[str]]


def split_cells(line: str) -> list[str]:
    """Cells separated by tabs or by two or more spaces (issue trackers turn tabs into spaces)."""
    return [cell.strip() for cell in re.split(r"\t+| {2,}", line.strip()) if cell.strip()]


def table_lines(text: str) -> list[str]:
    """The header and rows: from the first non-blank line up to the first blank line or "Legend"."""
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            if lines:
                break
            continue
        if stripped.startswith("Legend"):
            break
        if stripped.startswith("$") or stripped.startswith("#"):
            continue  # a pasted shell prompt
        lines.append(line)
    return lines


def parse_numa(cell: str) -> int | None:
    return int(cell) if cell.isdigit() else None


def parse_table(text: str, tool: str, split: Splitter = split_cells) -> LinkMatrix:
    """Header, rows, labels checked against the tool's vocabulary; raises TopologyParseError."""
    lines = table_lines(text)
    if len(lines) < 2:
        raise TopologyParseError(f"{tool}: no topology matrix in the text")
    header = split(lines[0])
    names = tuple(c for c in header if c not in AFFINITY_COLUMNS)
    extra_columns = [c for c in header if c in AFFINITY_COLUMNS]
    labels: list[tuple[str, ...]] = []
    cpu_affinity: list[str] = []
    numa_affinity: list[int | None] = []
    for line in lines[1:]:
        cells = split(line)
        if len(labels) == len(names) or len(cells) < len(names) + 1 or cells[0] != names[len(labels)]:
            raise TopologyParseError(f"{tool}: row {line.strip()!r} does not fit header {header}")
        row = tuple(cells[1 : len(names) + 1])
        for label in row:
            classify(tool, label)
        extras = dict(zip(extra_columns, cells[len(names) + 1 :], strict=False))
        labels.append(row)
        cpu_affinity.append(extras.get("CPU Affinity", ""))
        numa_affinity.append(parse_numa(extras.get("NUMA Affinity", "")))
    if len(labels) != len(names):
        raise TopologyParseError(f"{tool}: {len(names)} columns but {len(labels)} rows")
    return LinkMatrix(
        tool=tool,
        names=names,
        labels=tuple(labels),
        cpu_affinity=tuple(cpu_affinity),
        numa_affinity=tuple(numa_affinity),
    )
