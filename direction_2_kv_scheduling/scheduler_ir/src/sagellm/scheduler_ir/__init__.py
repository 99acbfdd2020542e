"""sagellm-scheduler-ir: policies that turn a queue snapshot into an ExecutionPlan.

Every policy is continuous batching in the vLLM v1 style -- prefill, chunked
prefill and decode are one mechanism -- and differs only in order: who runs
first, who is preempted first, who is admitted first. The shared machinery
lives in ``base`` (the step skeleton), ``budget`` (what a step may still
spend), ``ledger`` (what it has decided), ``phases`` (serve running, admit
waiting), ``prefix`` (prefix-aware admission), ``cost`` and ``preemption``
(recompute or swap); a policy is a small sibling module on top, listed in
``registry.BUILDERS``: ``fifo``, ``priority``, ``slo``, ``adaptive``.

    >>> from sagellm.core.config import load_config
    >>> from sagellm.core.registry import create_ir_builder
    >>> builder = create_ir_builder(load_config())  # FIFOIRBuilder via entry point "fifo"
"""

from sagellm.scheduler_ir.adaptive import AdaptiveIRBuilder
from sagellm.scheduler_ir.base import BaseIRBuilder, SchedulerLimits, StepOrder
from sagellm.scheduler_ir.budget import StepBudget
from sagellm.scheduler_ir.cost import CostModel
from sagellm.scheduler_ir.deadline import SLOTargets
from sagellm.scheduler_ir.describe import describe_plan
from sagellm.scheduler_ir.errors import InvalidSchedulerStateError
from sagellm.scheduler_ir.fifo import FIFOIRBuilder
from sagellm.scheduler_ir.ledger import PlanLedger, is_decode_chunk
from sagellm.scheduler_ir.load import Load, LoadMonitor
from sagellm.scheduler_ir.phases import admit_in_order, make_room, schedule_running, tokens_to_run, try_admit
from sagellm.scheduler_ir.preemption import cheaper_mode
from sagellm.scheduler_ir.prefix import PeekPrefixProbe, PrefixMatch, PrefixProbe, ViewPrefixProbe, rank_by_prefix
from sagellm.scheduler_ir.priority import PriorityIRBuilder
from sagellm.scheduler_ir.reference import NaiveFIFOIRBuilder
from sagellm.scheduler_ir.registry import BUILDERS, builder_class, builder_from_section
from sagellm.scheduler_ir.slo import SLOIRBuilder
from sagellm.scheduler_ir.version import __version__

__all__ = [
    "BUILDERS",
    "AdaptiveIRBuilder",
    "BaseIRBuilder",
    "CostModel",
    "FIFOIRBuilder",
    "InvalidSchedulerStateError",
    "Load",
    "LoadMonitor",
    "NaiveFIFOIRBuilder",
    "PeekPrefixProbe",
    "PlanLedger",
    "PrefixMatch",
    "PrefixProbe",
    "PriorityIRBuilder",
    "SLOIRBuilder",
    "SLOTargets",
    "SchedulerLimits",
    "StepBudget",
    "StepOrder",
    "ViewPrefixProbe",
    "__version__",
    "admit_in_order",
    "builder_class",
    "builder_from_section",
    "cheaper_mode",
    "describe_plan",
    "is_decode_chunk",
    "make_room",
    "rank_by_prefix",
    "schedule_running",
    "tokens_to_run",
    "try_admit",
]
