"""Recorded vendor-tool outputs parse to exactly the fields written by hand in their .expected.json.

The fixtures and where each was published are listed in fixtures/SOURCES.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from topology_helpers import FIXTURES, compare, info_view, load_json, matrix_view

from sagellm.topology import (
    LinkMatrix,
    from_nccl_xml,
    parse_npu_smi_topo,
    parse_nvidia_smi_topo,
    parse_rocm_smi_topo,
    parse_xpu_smi_topology,
)

PARSERS: dict[str, Callable[[str], LinkMatrix]] = {
    "nvidia": parse_nvidia_smi_topo,
    "npu": parse_npu_smi_topo,
    "rocm": parse_rocm_smi_topo,
    "xpu": parse_xpu_smi_topology,
}
TOOL_FIXTURES = sorted((FIXTURES / "tools").glob("*.txt"))
NCCL_FIXTURES = sorted((FIXTURES / "nccl").glob("*.xml"))


def _expected(fixture: Path) -> Path:
    return fixture.with_name(fixture.name.rsplit(".", 1)[0] + ".expected.json")


@pytest.mark.parametrize("fixture", TOOL_FIXTURES, ids=lambda p: p.stem)
def test_tool_output_matches_every_expected_field(fixture: Path) -> None:
    parser = PARSERS[fixture.name.split("_", 1)[0]]
    count, mismatches = compare(load_json(_expected(fixture)), matrix_view(parser(fixture.read_text())))
    assert count > 10
    assert mismatches == [], "\n".join(mismatches)


@pytest.mark.parametrize("fixture", NCCL_FIXTURES, ids=lambda p: p.stem)
def test_nccl_xml_matches_every_expected_field(fixture: Path) -> None:
    count, mismatches = compare(load_json(_expected(fixture)), info_view(from_nccl_xml(fixture.read_text())))
    assert count > 10
    assert mismatches == [], "\n".join(mismatches)


def test_the_recorded_set_covers_twelve_outputs_of_five_tools() -> None:
    tools = {p.name.split("_", 1)[0] for p in TOOL_FIXTURES} | ({"nccl"} if NCCL_FIXTURES else set())
    assert len(TOOL_FIXTURES) + len(NCCL_FIXTURES) >= 12
    assert tools == {"nvidia", "npu", "rocm", "xpu", "nccl"}
    assert all(_expected(p).exists() for p in TOOL_FIXTURES + NCCL_FIXTURES)
    sources = (FIXTURES / "SOURCES.md").read_text()
    for fixture in TOOL_FIXTURES + NCCL_FIXTURES:
        assert fixture.name in sources, f"{fixture.name} has no source in SOURCES.md"


def test_every_fixture_field_agrees() -> None:
    """The accuracy figure the README quotes: fields compared across all recorded fixtures, all equal."""
    total = 0
    for fixture in TOOL_FIXTURES:
        parser = PARSERS[fixture.name.split("_", 1)[0]]
        count, bad = compare(load_json(_expected(fixture)), matrix_view(parser(fixture.read_text())))
        assert bad == []
        total += count
    for fixture in NCCL_FIXTURES:
        count, bad = compare(load_json(_expected(fixture)), info_view(from_nccl_xml(fixture.read_text())))
        assert bad == []
        total += count
    assert total > 1000
