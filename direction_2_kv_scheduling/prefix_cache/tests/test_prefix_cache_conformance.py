"""The core PrefixIndex conformance suite, run against both indexes."""

from __future__ import annotations

from sagellm.core.protocols import PrefixIndex
from sagellm.core.testing import PrefixIndexConformance
from sagellm.prefix_cache import HashChainPrefixIndex, RadixPrefixIndex


class TestHashChainConformance(PrefixIndexConformance):
    def make_index(self, block_size: int) -> PrefixIndex:
        return HashChainPrefixIndex(block_size=block_size)


class TestRadixConformance(PrefixIndexConformance):
    def make_index(self, block_size: int) -> PrefixIndex:
        return RadixPrefixIndex(block_size=block_size)
