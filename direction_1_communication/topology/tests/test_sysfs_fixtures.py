"""SysfsTopologyDetector on hand-built fake trees: every expected field, plus the core conformance suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from topology_helpers import FIXTURES, compare, fake_root, info_view, load_json

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import TopologyDetector
from sagellm.core.testing.topology import TopologyDetectorConformance
from sagellm.topology import SysfsTopologyDetector

TREES = sorted(p.name.removesuffix(".tree.json") for p in (FIXTURES / "sysfs").glob("*.tree.json"))


@pytest.mark.parametrize("tree", TREES)
def test_fake_tree_matches_every_expected_field(tree: str) -> None:
    info = SysfsTopologyDetector(fake_root(tree)).detect()
    count, mismatches = compare(load_json(FIXTURES / "sysfs" / f"{tree}.expected.json"), info_view(info))
    assert count > 50
    assert mismatches == [], "\n".join(mismatches)


def test_virtual_interfaces_are_not_nics() -> None:
    names = [nic.name for nic in SysfsTopologyDetector(fake_root("xeon_2s_ib")).detect().nics]
    assert "lo" not in names and "docker0" not in names


def test_a_directory_that_is_not_sysfs_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a sysfs root"):
        SysfsTopologyDetector(str(tmp_path))


class TestXeonTwoSocketsConformance(TopologyDetectorConformance):
    def make_detector(self) -> TopologyDetector:
        return SysfsTopologyDetector(fake_root("xeon_2s_ib"))


class TestEpycNps4Conformance(TopologyDetectorConformance):
    def make_detector(self) -> TopologyDetector:
        return SysfsTopologyDetector(fake_root("epyc_nps4"))


def test_hybrid_cpus_read_every_cache_instance_and_agree(tmp_path: Path) -> None:
    """With /sys/devices/cpu_atom present the per-core shortcut is off; the answer must not change."""
    root = tmp_path / "hybrid"
    shutil.copytree(fake_root("xeon_2s_ib"), root, symlinks=True)
    (root / "sys/devices/cpu_atom").mkdir(parents=True)
    assert (
        SysfsTopologyDetector(str(root)).detect().caches
        == SysfsTopologyDetector(fake_root("xeon_2s_ib")).detect().caches
    )
