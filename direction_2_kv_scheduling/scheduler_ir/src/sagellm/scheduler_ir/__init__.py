"""sagellm-scheduler-ir: policies that turn a queue snapshot into an ExecutionPlan.

Every policy is continuous batching in the vLLM v1 style -- prefill, chunked
prefill and decode are one mechanism -- and differs only in order: who runs
first, who is preempted first, who is admitted first. The shared machinery
lives in ``budget`` (what a step may still spend), ``ledger`` (what it has
decided) and ``phases`` (serve running, admit waiting); a policy is a small
sibling module on top, listed in ``registry.BUILDERS``.

    >>> from sagellm.core.config import load_config
    >>> from sagellm.core.registry import create_ir_builder
    >>> builder = create_ir_builder(load_config())  # FIFOIRBuilder via entry point "fifo"
"""

from sagellm.scheduler_ir.base import BaseIRBuilder, SchedulerLimits
from sagellm.scheduler_ir.budget import StepBudget, blocks_to_admit, blocks_to_grow
from sagellm.scheduler_ir.describe import describe_plan
from sagellm.scheduler_ir.errors import InvalidSchedulerStateError
from sagellm.scheduler_ir.fifo import FIFOIRBuilder
from sagellm.scheduler_ir.ledger import PlanLedger, is_decode_chunk
from sagellm.scheduler_ir.phases import admit_in_order, make_room, schedule_running, tokens_to_run, try_admit
from sagellm.scheduler_ir.reference import NaiveFIFOIRBuilder
from sagellm.scheduler_ir.registry import BUILDERS, builder_class, builder_from_section
from sagellm.scheduler_ir.version import __version__

__all__ = [
    "BUILDERS",
    "BaseIRBuilder",
    "FIFOIRBuilder",
    "InvalidSchedulerStateError",
    "NaiveFIFOIRBuilder",
    "PlanLedger",
    "SchedulerLimits",
    "StepBudget",
    "__version__",
    "admit_in_order",
    "blocks_to_admit",
    "blocks_to_grow",
    "builder_class",
    "builder_from_section",
    "describe_plan",
    "is_decode_chunk",
    "make_room",
    "schedule_running",
    "tokens_to_run",
    "try_admit",
]
