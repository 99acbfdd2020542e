"""Seam for discovering devices, NICs, NUMA nodes and links."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sagellm.core.types.topology import TopologyInfo


@runtime_checkable
class TopologyDetector(Protocol):
    def detect(self) -> TopologyInfo: ...
