"""Conformance suites: one per Protocol, run by every implementation.

Subclass a suite in a test module named ``Test...`` and implement its
factory method; pytest collects the inherited ``test_*`` methods::

    from sagellm.core.testing import PrefixIndexConformance

    class TestHashChain(PrefixIndexConformance):
        def make_index(self, block_size):
            return HashChainPrefixIndex(block_size=block_size)

The suites use plain ``assert`` and no pytest import, so core stays free of
test dependencies.
"""

from sagellm.core.testing.comm_backend import CommBackendConformance
from sagellm.core.testing.cot_accelerator import CoTAcceleratorConformance
from sagellm.core.testing.draft_model import DraftModelConformance
from sagellm.core.testing.duplex_kv_channel import DuplexKVChannelConformance
from sagellm.core.testing.eviction_policy import EvictionPolicyConformance
from sagellm.core.testing.fused_kernel import FusedKernelConformance
from sagellm.core.testing.ir_builder import IRBuilderConformance
from sagellm.core.testing.kv_pool import KVPoolConformance
from sagellm.core.testing.kv_transfer import KVTransferChannelConformance
from sagellm.core.testing.lifetime_predictor import LifetimePredictorConformance
from sagellm.core.testing.overlap_manager import OverlapManagerConformance
from sagellm.core.testing.prefix_index import PrefixIndexConformance
from sagellm.core.testing.quantizer import LinearQuantizerConformance, QuantizerConformance
from sagellm.core.testing.raises import raises
from sagellm.core.testing.sparsifier import SparsifierConformance
from sagellm.core.testing.speculative_decoder import SpeculativeDecoderConformance
from sagellm.core.testing.tiered_kv_pool import TieredKVPoolConformance
from sagellm.core.testing.topology import TopologyDetectorConformance

__all__ = [
    "CoTAcceleratorConformance",
    "CommBackendConformance",
    "DraftModelConformance",
    "DuplexKVChannelConformance",
    "EvictionPolicyConformance",
    "FusedKernelConformance",
    "IRBuilderConformance",
    "KVPoolConformance",
    "KVTransferChannelConformance",
    "LifetimePredictorConformance",
    "LinearQuantizerConformance",
    "OverlapManagerConformance",
    "PrefixIndexConformance",
    "QuantizerConformance",
    "SparsifierConformance",
    "SpeculativeDecoderConformance",
    "TieredKVPoolConformance",
    "TopologyDetectorConformance",
    "raises",
]
