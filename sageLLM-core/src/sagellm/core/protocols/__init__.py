"""The Protocols every replaceable sageLLM component implements.

They are ``runtime_checkable`` so the registry can verify that what an entry
point returned really is, structurally, the thing asked for.
"""

from sagellm.core.protocols.acceleration import (
    CalibrationObserver,
    CoTAccelerator,
    DecoderKernels,
    DraftModel,
    DraftModelSource,
    FusedKernel,
    KVQuantizeKernels,
    LinearQuantizer,
    PagedAttentionKernels,
    Quantizer,
    Sparsifier,
    SpeculativeDecoder,
)
from sagellm.core.protocols.communication import (
    CommBackend,
    DuplexKVChannel,
    IncomingKV,
    InterconnectBackend,
    KVTransferChannel,
    KVTransferHandle,
    OverlapManager,
    PendingResult,
    TransferReceipt,
)
from sagellm.core.protocols.eviction_policy import EvictionPolicy, PredictiveEvictionPolicy
from sagellm.core.protocols.ir_builder import IRBuilder, KVView, SwapCapableIRBuilder
from sagellm.core.protocols.kv_pool import CompletionHandle, KVPool, MigrationTicket, QuantizedKVPool, TieredKVPool
from sagellm.core.protocols.lifetime_predictor import LifetimePredictor
from sagellm.core.protocols.prefix_index import PrefixIndex
from sagellm.core.protocols.topology import TopologyDetector

__all__ = [
    "CalibrationObserver",
    "CoTAccelerator",
    "CommBackend",
    "DecoderKernels",
    "CompletionHandle",
    "DraftModel",
    "DraftModelSource",
    "DuplexKVChannel",
    "EvictionPolicy",
    "FusedKernel",
    "IRBuilder",
    "IncomingKV",
    "InterconnectBackend",
    "KVPool",
    "KVQuantizeKernels",
    "KVView",
    "KVTransferChannel",
    "KVTransferHandle",
    "LifetimePredictor",
    "LinearQuantizer",
    "MigrationTicket",
    "OverlapManager",
    "PendingResult",
    "PagedAttentionKernels",
    "PredictiveEvictionPolicy",
    "PrefixIndex",
    "QuantizedKVPool",
    "Quantizer",
    "Sparsifier",
    "SpeculativeDecoder",
    "SwapCapableIRBuilder",
    "TieredKVPool",
    "TopologyDetector",
    "TransferReceipt",
]
