"""``rocm-smi --showtopo`` (AMD): up to four sections, each optional.

::

    ==== Weight between two GPUs ====      -> LinkMatrix.weights
    ==== Hops between two GPUs ====        -> LinkMatrix.hops
    ==== Link Type between two GPUs ====   -> LinkMatrix.labels (XGMI, PCIE; 0 on the diagonal)
    ==== Numa Nodes ====                   -> LinkMatrix.numa_affinity ("GPU[0] : (Topology) Numa Node: 0")

``--showtoponuma`` prints the last section alone; it parses too.
"""

from __future__ import annotations

import re

from sagellm.topology.errors import TopologyParseError
from sagellm.topology.link_labels import classify
from sagellm.topology.link_matrix import LinkMatrix

_SECTION = re.compile(r"^=+\s*(.*?)\s*=+$")
_NUMA = re.compile(r"^GPU\s*\[?\s*(\d+)\s*\]?\s*:\s*\(Topology\)\s*Numa Node:\s*(-?\d+)", re.IGNORECASE)
_MATRICES = {
    "Weight between two GPUs": "weights",
    "Hops between two GPUs": "hops",
    "Link Type between two GPUs": "labels",
}


def _sections(text: str) -> dict[str, list[str]]:
    """Section title -> its non-blank lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        match = _SECTION.match(stripped)
        if match:
            current = sections.setdefault(match.group(1), [])
        elif stripped and current is not None:
            current.append(stripped)
    return sections


def _matrix(title: str, lines: list[str]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    header = tuple(lines[0].split()) if lines else ()
    rows: list[tuple[str, ...]] = []
    for line in lines[1:]:
        cells = line.split()
        if len(rows) >= len(header) or len(cells) != len(header) + 1 or cells[0] != header[len(rows)]:
            raise TopologyParseError(f"rocm-smi {title!r}: row {line!r} does not fit header {header}")
        rows.append(tuple(cells[1:]))
    if len(rows) != len(header):
        raise TopologyParseError(f"rocm-smi {title!r}: {len(header)} columns but {len(rows)} rows")
    return header, tuple(rows)


def _ints(title: str, rows: tuple[tuple[str, ...], ...]) -> tuple[tuple[int, ...], ...]:
    try:
        return tuple(tuple(int(cell) for cell in row) for row in rows)
    except ValueError:
        raise TopologyParseError(f"rocm-smi {title!r}: non-integer cell") from None


def parse_rocm_smi_topo(text: str) -> LinkMatrix:
    sections = _sections(text)
    names: tuple[str, ...] = ()
    found: dict[str, tuple[tuple[str, ...], ...]] = {}
    for title, field in _MATRICES.items():
        if title in sections:
            header, rows = _matrix(title, sections[title])
            if names and header != names:
                raise TopologyParseError(f"rocm-smi: {title!r} names {header}, earlier sections {names}")
            names, found[field] = header, rows
    numa: dict[str, int | None] = {}
    for line in sections.get("Numa Nodes", []):
        match = _NUMA.match(line)
        if match:
            numa[f"GPU{match.group(1)}"] = int(match.group(2)) if int(match.group(2)) >= 0 else None
    if not names:
        names = tuple(numa)
    if not names:
        raise TopologyParseError("rocm-smi: no topology section in the text")
    for row in found.get("labels", ()):
        for label in row:
            classify("rocm-smi", label)
    return LinkMatrix(
        tool="rocm-smi",
        names=names,
        labels=found.get("labels", ()),
        numa_affinity=tuple(numa.get(name) for name in names) if numa else (),
        weights=_ints("weights", found["weights"]) if "weights" in found else (),
        hops=_ints("hops", found["hops"]) if "hops" in found else (),
    )
