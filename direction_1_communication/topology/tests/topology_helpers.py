"""Shared by the fixture tests: where fixtures live, how fake trees are built, field-by-field comparison.

Expected values are JSON written by hand from each fixture's text; the
views below turn what the code returned into the same JSON shape, and
:func:`compare` walks the expected document leaf by leaf, so a report says
exactly which field disagreed and how many fields were checked.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sagellm.core.types.topology import TopologyInfo
from sagellm.topology import LinkMatrix, format_cpulist

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LEVEL_NAMES = {(1, "Data"): "L1d", (1, "Instruction"): "L1i", (2, "Unified"): "L2", (3, "Unified"): "L3"}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def materialize(tree: Path, root: Path) -> Path:
    """Write a fake sysfs/procfs tree (``{"files": {path: text}, "links": {path: target}}``) under ``root``."""
    spec = load_json(tree)
    for rel, text in spec["files"].items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel, target in spec["links"].items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
    return root


_TREES: dict[str, Path] = {}


def fake_root(name: str) -> str:
    """The fake tree ``fixtures/sysfs/<name>.tree.json``, materialized once per test process."""
    if name not in _TREES:
        _TREES[name] = materialize(FIXTURES / "sysfs" / f"{name}.tree.json", Path(tempfile.mkdtemp(prefix=f"{name}-")))
    return str(_TREES[name])


def compare(expected: Any, actual: Any, path: str = "") -> tuple[int, list[str]]:
    """(number of leaf fields compared, mismatches as "path: expected X, got Y")."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return 1, [f"{path}: expected an object, got {actual!r}"]
        count, bad = 0, []
        for key, value in expected.items():
            if key not in actual:
                count, bad = count + 1, [*bad, f"{path}.{key}: missing"]
                continue
            n, b = compare(value, actual[key], f"{path}.{key}")
            count, bad = count + n, bad + b
        return count, bad
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return 1, [f"{path}: expected {len(expected)} items, got {actual!r}"]
        count, bad = 0, []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            n, b = compare(e, a, f"{path}[{i}]")
            count, bad = count + n, bad + b
        return count, bad
    return 1, ([] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"])


def _devices(info: TopologyInfo) -> list[dict[str, Any]]:
    return [
        {
            "index": d.index,
            "kind": d.kind,
            "name": d.name,
            "numa_node": d.numa_node,
            "pci_address": d.pci_address,
            "local_cpus": format_cpulist(d.local_cpus),
        }
        for d in info.devices
    ]


def _links(info: TopologyInfo) -> dict[str, Any]:
    labels: dict[str, int] = {}
    for link in info.links:
        labels[link.label] = labels.get(link.label, 0) + 1
    return {"count": len(info.links), "by_label": labels}


def matrix_view(matrix: LinkMatrix) -> dict[str, Any]:
    """A parsed tool output in the shape of ``tools/*.expected.json``."""
    info = matrix.to_topology()
    return {
        "parser": matrix.tool,
        "names": list(matrix.names),
        "labels": [list(row) for row in matrix.labels],
        "cpu_affinity": list(matrix.cpu_affinity),
        "numa_affinity": list(matrix.numa_affinity),
        "aliases": [list(pair) for pair in matrix.aliases],
        "weights": [list(row) for row in matrix.weights],
        "hops": [list(row) for row in matrix.hops],
        "devices": _devices(info),
        "nics": [{"name": n.name, "kind": n.kind} for n in info.nics],
        "numa_nodes": [{"id": n.id, "cpus": format_cpulist(n.cpus)} for n in info.numa_nodes],
        "links": _links(info),
    }


def _pci(info: TopologyInfo) -> list[dict[str, Any]]:
    return [
        {
            "address": p.address,
            "class_code": f"0x{p.class_code:06x}",
            "class_name": p.class_name,
            "vendor_id": f"0x{p.vendor_id:04x}",
            "device_id": f"0x{p.device_id:04x}",
            "numa_node": p.numa_node,
            "link_speed": p.link_speed,
            "link_width": p.link_width,
        }
        for p in info.pci_devices
    ]


def _nics(info: TopologyInfo) -> list[dict[str, Any]]:
    return [
        {
            "name": n.name,
            "kind": n.kind,
            "speed_mbps": n.speed_mbps,
            "numa_node": n.numa_node,
            "pci_address": n.pci_address,
            "port": n.port,
            "guid": n.guid,
        }
        for n in info.nics
    ]


def info_view(info: TopologyInfo) -> dict[str, Any]:
    """A TopologyInfo in the shape of ``nccl/*.expected.json`` and ``sysfs/*.expected.json``."""
    caches: dict[str, dict[str, Any]] = {}
    for cache in info.caches:
        name = LEVEL_NAMES.get((cache.level, cache.type), f"L{cache.level}{cache.type}")
        entry = caches.setdefault(
            name, {"instances": 0, "size_bytes": cache.size_bytes, "first_shared": format_cpulist(cache.shared_cpus)}
        )
        entry["instances"] += 1
    cpu = info.cpu
    return {
        "hostname": info.hostname,
        "cpu": None
        if cpu is None
        else {
            "model": cpu.model,
            "vendor": cpu.vendor,
            "family": cpu.family,
            "model_number": cpu.model_number,
            "sockets": cpu.sockets,
            "cores": cpu.cores,
            "threads": cpu.threads,
            "flags": list(cpu.flags),
            "smt_siblings": [list(group) for group in cpu.smt_siblings],
        },
        "numa_nodes": [
            {"id": n.id, "cpus": format_cpulist(n.cpus), "memory_bytes": n.memory_bytes, "distances": list(n.distances)}
            for n in info.numa_nodes
        ],
        "caches": caches,
        "nics": _nics(info),
        "pci_devices": _pci(info),
        "devices": _devices(info),
        "links": _links(info),
        "extra": dict(info.extra),
    }
