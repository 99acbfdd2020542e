"""Both detectors are found through the ``sagellm.topology_detector`` entry points."""

from __future__ import annotations

from topology_helpers import fake_root

from sagellm.core.config import TopologySection
from sagellm.core.registry import create
from sagellm.topology import AutoTopologyDetector, SysfsTopologyDetector


def test_sysfs_entry_point_builds_a_detector_with_its_root_option() -> None:
    detector = create(
        "topology_detector", TopologySection(implementation="sysfs", options={"root": fake_root("epyc_nps4")})
    )
    assert isinstance(detector, SysfsTopologyDetector)
    assert detector.detect().hostname == "epyc-nps4"


def test_auto_entry_point() -> None:
    assert isinstance(create("topology_detector", TopologySection(implementation="auto")), AutoTopologyDetector)
