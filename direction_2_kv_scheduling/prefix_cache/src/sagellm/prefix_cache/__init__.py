"""sagellm-prefix-cache: find KV blocks already computed for a token prefix.

:class:`HashChainPrefixIndex` implements :class:`sagellm.core.protocols.PrefixIndex`
with a stable hash chain over full token blocks, :class:`RadixPrefixIndex` with
a block-aligned radix tree that also reports partial-block matches; engines
build them through the ``sagellm.prefix_index`` entry points ``hash_chain`` and
``radix``.
"""

from sagellm.prefix_cache.hash_chain_index import HashChainPrefixIndex
from sagellm.prefix_cache.hashing import hash_block_chain
from sagellm.prefix_cache.radix_index import RadixPrefixIndex
from sagellm.prefix_cache.radix_match import RadixMatch
from sagellm.prefix_cache.stats import PrefixCacheStats
from sagellm.prefix_cache.version import __version__

__all__ = [
    "HashChainPrefixIndex",
    "PrefixCacheStats",
    "RadixMatch",
    "RadixPrefixIndex",
    "__version__",
    "hash_block_chain",
]
