"""Engines find the index through the ``sagellm.prefix_index`` entry point."""

from __future__ import annotations

from sagellm.core import load_config
from sagellm.core.protocols import PrefixIndex
from sagellm.core.registry import available, create_prefix_index
from sagellm.prefix_cache import HashChainPrefixIndex, RadixPrefixIndex


def test_entry_point_is_advertised() -> None:
    assert available("prefix_index")["hash_chain"] == "sagellm.prefix_cache:HashChainPrefixIndex"


def test_registry_builds_the_index_from_default_config() -> None:
    index = create_prefix_index(load_config(), block_size=16)
    assert isinstance(index, HashChainPrefixIndex) and isinstance(index, PrefixIndex)
    assert index.block_size == 16


def test_radix_entry_point_builds_the_radix_index() -> None:
    assert available("prefix_index")["radix"] == "sagellm.prefix_cache:RadixPrefixIndex"
    config = load_config()
    index = create_prefix_index(config.prefix_cache.model_copy(update={"implementation": "radix"}), block_size=8)
    assert isinstance(index, RadixPrefixIndex) and isinstance(index, PrefixIndex)
    assert index.block_size == 8
