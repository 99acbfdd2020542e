"""What every builder in this package shares: limits, options, the step skeleton.

A policy only decides *order* (:meth:`BaseIRBuilder.order`); :meth:`build`
runs the same two phases for all of them::

    order(state) -> StepOrder(running, waiting, max_tokens, policy)
    1. serve ``running`` in order, preempting from its tail when blocks run out
       (recompute or swap per victim, see ``preemption.py``)
    2. only if nothing was preempted: admit ``waiting`` in order (regrouped by
       cached prefix within ``prefix_window``), stopping at the first misfit
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

from sagellm.core.config import SchedulerSection
from sagellm.core.errors import ConfigError
from sagellm.core.metrics import MetricsRegistry
from sagellm.core.protocols import KVView
from sagellm.core.types import ArithmeticKVView, ExecutionPlan, SchedulerState, SequenceView
from sagellm.scheduler_ir.budget import StepBudget
from sagellm.scheduler_ir.cost import CostModel
from sagellm.scheduler_ir.ledger import PlanLedger
from sagellm.scheduler_ir.phases import admit_in_order, schedule_running
from sagellm.scheduler_ir.preemption import mode_chooser
from sagellm.scheduler_ir.prefix import PrefixProbe, ViewPrefixProbe, rank_by_prefix

B = TypeVar("B", bound="BaseIRBuilder")


@dataclass(frozen=True, slots=True)
class SchedulerLimits:
    """Per-step caps (the knobs of core's ``SchedulerSection``)."""

    max_num_seqs: int = 64
    max_num_batched_tokens: int = 512
    enable_chunked_prefill: bool = True

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs must be >= 1 (got {self.max_num_seqs})")
        if self.max_num_batched_tokens < 1:
            raise ConfigError(f"max_num_batched_tokens must be >= 1 (got {self.max_num_batched_tokens})")

    def new_budget(self, kv: KVView) -> StepBudget:
        if kv.block_size < 1:
            raise ConfigError(f"block_size must be >= 1 (got {kv.block_size})")
        return StepBudget(self.max_num_batched_tokens, self.max_num_seqs, kv.num_free_blocks, kv)


@dataclass(frozen=True, slots=True)
class StepOrder:
    """A policy's decision for one step, before budgets apply.

    ``running`` is the service order (its tail is preempted first),
    ``waiting`` the admission order (consumed lazily), ``max_tokens`` an
    extra token cap for this step (None: the configured budget), and
    ``policy`` the name stamped on the plan.
    """

    running: list[SequenceView]
    waiting: Iterable[SequenceView]
    max_tokens: int | None = None
    policy: str = ""


class BaseIRBuilder(ABC):
    """Base of the package's policies; subclasses implement ``name`` and ``order``.

    A builder is a pure function of its snapshot and KV view (except, for
    the adaptive policy, its current mode), so one instance must serve one
    engine.
    """

    #: ``SchedulerSection.options`` keys the policy accepts (CostModel fields become a ``cost``).
    option_names: ClassVar[frozenset[str]] = frozenset({"swap_available", "prefix_window"}) | CostModel.option_names()

    def __init__(
        self,
        max_num_seqs: int = 64,
        max_num_batched_tokens: int = 512,
        enable_chunked_prefill: bool = True,
        *,
        swap_available: bool | None = None,
        prefix_window: int = 0,
        prefix_probe: PrefixProbe | None = None,
        cost: CostModel | None = None,
        metrics: MetricsRegistry | None = None,
    ) -> None:
        self.limits = SchedulerLimits(max_num_seqs, max_num_batched_tokens, enable_chunked_prefill)
        if swap_available is not None and not isinstance(swap_available, bool):
            raise ConfigError(f"swap_available must be true or false (got {swap_available!r})")
        if not isinstance(prefix_window, int) or isinstance(prefix_window, bool) or prefix_window < 0:
            raise ConfigError(f"prefix_window must be an integer >= 0 (got {prefix_window!r})")
        self.swap_available = swap_available  # None: as the engine allows (use_swap), else recompute
        self.prefix_window = prefix_window
        self.prefix_probe: PrefixProbe = prefix_probe or ViewPrefixProbe()
        self.cost = cost or CostModel()
        self.metrics = metrics  # where a policy records its own decisions (the adaptive mode); None: nowhere

    @classmethod
    def from_config(cls: type[B], section: SchedulerSection, **deps: Any) -> B:
        """Build from core's scheduler section; unknown ``options`` are a :class:`ConfigError`.

        ``deps`` are objects the engine supplies that config cannot hold
        (``prefix_probe``, ``metrics``).
        """
        unknown = sorted(set(section.options) - cls.option_names)
        if unknown:
            accepted = ", ".join(sorted(cls.option_names)) or "none"
            raise ConfigError(f"scheduler_ir.options: unknown keys {unknown} for {cls.__name__} (accepted: {accepted})")
        cost_keys = CostModel.option_names()
        kwargs: dict[str, Any] = {k: v for k, v in section.options.items() if k not in cost_keys}
        cost = CostModel(**{k: v for k, v in section.options.items() if k in cost_keys})
        return cls(
            max_num_seqs=section.max_num_seqs,
            max_num_batched_tokens=section.max_num_batched_tokens,
            enable_chunked_prefill=section.enable_chunked_prefill,
            cost=cost,
            **kwargs,
            **deps,
        )

    @property
    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def order(self, state: SchedulerState) -> StepOrder:
        """Service, preemption and admission order for this snapshot (the policy itself)."""

    def build(self, state: SchedulerState, kv: KVView | None = None) -> ExecutionPlan:
        kv = kv or ArithmeticKVView(state.block_size, state.num_free_blocks)
        budget = self.limits.new_budget(kv)
        order = self.order(state)
        if order.max_tokens is not None:
            budget.cap_tokens(order.max_tokens)
        ledger = PlanLedger(mode_chooser(kv.block_size, self.cost, bool(self.swap_available)))
        chunked = self.limits.enable_chunked_prefill
        schedule_running(deque(order.running), budget, ledger, chunked)
        if not ledger.preempted:
            budget.cap_seqs(self.limits.max_num_seqs - len(state.running))
            waiting = rank_by_prefix(order.waiting, self.prefix_probe, self.prefix_window)
            admit_in_order(waiting, budget, ledger, chunked)
        return ledger.to_plan(order.policy or self.name)

    def use_swap(self, kv_bytes_per_token: float) -> None:
        """The engine can swap (its pool has a host tier): swap victims where cheaper, unless configured off.

        The engine's real KV bytes per token replace the cost model's default.
        """
        if self.swap_available is False:
            return
        self.swap_available = True
        self.cost = replace(self.cost, kv_bytes_per_token=float(kv_bytes_per_token))

    def __repr__(self) -> str:
        lim = self.limits
        return (
            f"{type(self).__name__}(max_num_seqs={lim.max_num_seqs}, "
            f"max_num_batched_tokens={lim.max_num_batched_tokens}, "
            f"enable_chunked_prefill={lim.enable_chunked_prefill}, swap_available={self.swap_available}, "
            f"prefix_window={self.prefix_window})"
        )
