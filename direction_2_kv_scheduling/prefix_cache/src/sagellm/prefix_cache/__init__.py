"""sagellm-prefix-cache: find KV blocks already computed for a token prefix.

:class:`HashChainPrefixIndex` implements :class:`sagellm.core.protocols.PrefixIndex`
with a stable hash chain over full token blocks; engines build it through the
``sagellm.prefix_index`` entry point ``hash_chain``.
"""

from sagellm.prefix_cache.hash_chain_index import HashChainPrefixIndex
from sagellm.prefix_cache.hashing import hash_block_chain
from sagellm.prefix_cache.stats import PrefixCacheStats
from sagellm.prefix_cache.version import __version__

__all__ = ["HashChainPrefixIndex", "PrefixCacheStats", "__version__", "hash_block_chain"]
