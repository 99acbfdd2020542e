"""What every builder in this package shares: limits, config wiring, step ids."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from sagellm.core.config import SchedulerSection
from sagellm.core.errors import ConfigError
from sagellm.core.types import ExecutionPlan, SchedulerState
from sagellm.scheduler_ir.budget import StepBudget

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

    def new_budget(self, state: SchedulerState) -> StepBudget:
        if state.block_size < 1:
            raise ConfigError(f"block_size must be >= 1 (got {state.block_size})")
        return StepBudget(self.max_num_batched_tokens, self.max_num_seqs, state.num_free_blocks, state.block_size)


class BaseIRBuilder(ABC):
    """Base of the package's policies; subclasses implement ``name`` and ``build``.

    A builder is a pure function of its snapshot except for the step id it
    stamps on each plan, so one instance must serve one engine.
    """

    #: ``SchedulerSection.options`` keys the policy accepts as constructor kwargs.
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self, max_num_seqs: int = 64, max_num_batched_tokens: int = 512, enable_chunked_prefill: bool = True
    ) -> None:
        self.limits = SchedulerLimits(max_num_seqs, max_num_batched_tokens, enable_chunked_prefill)
        self._step_ids = itertools.count(1)

    @classmethod
    def from_config(cls: type[B], section: SchedulerSection) -> B:
        """Build from core's scheduler section; unknown ``options`` are a :class:`ConfigError`."""
        unknown = sorted(set(section.options) - cls.option_names)
        if unknown:
            accepted = ", ".join(sorted(cls.option_names)) or "none"
            raise ConfigError(f"scheduler_ir.options: unknown keys {unknown} for {cls.__name__} (accepted: {accepted})")
        kwargs: dict[str, Any] = dict(section.options)
        return cls(
            max_num_seqs=section.max_num_seqs,
            max_num_batched_tokens=section.max_num_batched_tokens,
            enable_chunked_prefill=section.enable_chunked_prefill,
            **kwargs,
        )

    @property
    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def build(self, state: SchedulerState) -> ExecutionPlan: ...

    def next_step_id(self) -> int:
        """1, 2, 3, ... -- one per plan, so logs and traces can line plans up with steps."""
        return next(self._step_ids)

    def __repr__(self) -> str:
        lim = self.limits
        return (
            f"{type(self).__name__}(max_num_seqs={lim.max_num_seqs}, "
            f"max_num_batched_tokens={lim.max_num_batched_tokens}, "
            f"enable_chunked_prefill={lim.enable_chunked_prefill})"
        )
