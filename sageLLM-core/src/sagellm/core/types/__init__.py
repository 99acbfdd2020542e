"""Value objects shared by every sageLLM package (no torch here)."""

from sagellm.core.types.eviction import EvictionContext
from sagellm.core.types.kv import (
    BlockId,
    BlockMove,
    KVBlockMeta,
    KVLayout,
    KVPoolStats,
    MigrationPlan,
    MigrationRate,
    PrefixHit,
    Tier,
    TierUsage,
)
from sagellm.core.types.kv_view import ArithmeticKVView, blocks_for, blocks_to_admit, blocks_to_grow
from sagellm.core.types.plan import (
    ExecutionPlan,
    PreemptionMode,
    ScheduledChunk,
    SchedulerState,
    SequenceView,
)
from sagellm.core.types.reasoning import AnswerProbe, ReasoningProgress
from sagellm.core.types.request import Request, SamplingParams
from sagellm.core.types.sequence import SequenceState, SequenceStatus
from sagellm.core.types.speculation import DraftSequence
from sagellm.core.types.step import StepOutput
from sagellm.core.types.topology import (
    CacheInfo,
    CpuInfo,
    DeviceInfo,
    LinkInfo,
    NicInfo,
    NumaNode,
    PciDevice,
    TopologyInfo,
)

__all__ = [
    "AnswerProbe",
    "ArithmeticKVView",
    "BlockId",
    "BlockMove",
    "CacheInfo",
    "CpuInfo",
    "DeviceInfo",
    "DraftSequence",
    "EvictionContext",
    "ExecutionPlan",
    "KVBlockMeta",
    "KVLayout",
    "KVPoolStats",
    "LinkInfo",
    "MigrationPlan",
    "MigrationRate",
    "NicInfo",
    "NumaNode",
    "PciDevice",
    "PreemptionMode",
    "PrefixHit",
    "ReasoningProgress",
    "Request",
    "SamplingParams",
    "ScheduledChunk",
    "SchedulerState",
    "SequenceState",
    "SequenceStatus",
    "SequenceView",
    "StepOutput",
    "Tier",
    "TierUsage",
    "TopologyInfo",
    "blocks_for",
    "blocks_to_admit",
    "blocks_to_grow",
]
