"""The Protocols every replaceable sageLLM component implements.

They are ``runtime_checkable`` so the registry can verify that what an entry
point returned really is, structurally, the thing asked for.
"""

from sagellm.core.protocols.acceleration import (
    CalibrationObserver,
    CoTAccelerator,
    FusedKernel,
    LinearQuantizer,
    Quantizer,
    Sparsifier,
    SpeculativeDecoder,
)
from sagellm.core.protocols.communication import (
    CommBackend,
    InterconnectBackend,
    KVTransferChannel,
    OverlapManager,
)
from sagellm.core.protocols.eviction_policy import EvictionPolicy
from sagellm.core.protocols.ir_builder import IRBuilder
from sagellm.core.protocols.kv_pool import CompletionHandle, KVPool
from sagellm.core.protocols.lifetime_predictor import LifetimePredictor
from sagellm.core.protocols.prefix_index import PrefixIndex
from sagellm.core.protocols.topology import TopologyDetector

__all__ = [
    "CalibrationObserver",
    "CoTAccelerator",
    "CommBackend",
    "CompletionHandle",
    "EvictionPolicy",
    "FusedKernel",
    "IRBuilder",
    "InterconnectBackend",
    "KVPool",
    "KVTransferChannel",
    "LifetimePredictor",
    "LinearQuantizer",
    "OverlapManager",
    "PrefixIndex",
    "Quantizer",
    "Sparsifier",
    "SpeculativeDecoder",
    "TopologyDetector",
]
