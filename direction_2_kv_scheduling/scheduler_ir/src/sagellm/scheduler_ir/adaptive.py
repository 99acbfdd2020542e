"""Adaptive scheduling: FIFO while the engine keeps up, SLO or priority order when it does not.

FIFO is the fairest order and the cheapest to compute, and when everything
fits every order gives the same latencies. Under load, order decides who
meets the SLO, so the builder switches to ``loaded_policy`` (``"slo"`` or
``"priority"``) when the :class:`LoadMonitor` says the engine is loaded
(queue length or KV pressure past the high marks) and back when both fall
under the low marks (hysteresis, see ``load.py``).

Which one ordered a step is on the plan (``ExecutionPlan.policy`` is
``"adaptive:fifo"`` or ``"adaptive:slo"``), on the builder (``mode``,
``num_switches``), and, when the engine passes a ``metrics`` registry, in
the gauge ``scheduler_adaptive_loaded`` (0/1) and the counter
``scheduler_adaptive_switches_total``.

Options are flat, as in ``scheduler_ir.options``: the adaptive ones
(``loaded_policy``, ``queue_high``, ``queue_low``, ``kv_high``, ``kv_low``),
the common ones (cost model, ``swap_available``, ``prefix_window``), and
those of the loaded policy (``ttft_slo_ms``... or ``aging_rate``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.core.metrics import MetricsRegistry
from sagellm.core.types import SchedulerState
from sagellm.scheduler_ir.base import BaseIRBuilder, StepOrder
from sagellm.scheduler_ir.fifo import FIFOIRBuilder
from sagellm.scheduler_ir.load import Load, LoadMonitor
from sagellm.scheduler_ir.priority import PriorityIRBuilder
from sagellm.scheduler_ir.slo import SLOIRBuilder

LOADED_POLICIES: dict[str, type[BaseIRBuilder]] = {"slo": SLOIRBuilder, "priority": PriorityIRBuilder}
_COMMON = frozenset({"swap_available", "prefix_window", "prefix_probe", "cost", "metrics"})
_MONITOR = frozenset({"queue_high", "queue_low", "kv_high", "kv_low"})


class AdaptiveIRBuilder(BaseIRBuilder):
    """FIFO when calm, ``loaded_policy`` when loaded; the plan says which."""

    option_names = (
        BaseIRBuilder.option_names
        | {"loaded_policy"}
        | _MONITOR
        | SLOIRBuilder.option_names
        | PriorityIRBuilder.option_names
    )

    def __init__(
        self,
        max_num_seqs: int = 64,
        max_num_batched_tokens: int = 512,
        enable_chunked_prefill: bool = True,
        *,
        loaded_policy: str = "slo",
        **options: Any,
    ) -> None:
        common = {k: v for k, v in options.items() if k in _COMMON}
        super().__init__(max_num_seqs, max_num_batched_tokens, enable_chunked_prefill, **common)
        self.monitor = LoadMonitor(**{k: v for k, v in options.items() if k in _MONITOR})
        inner: dict[str, Any] = {
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": max_num_batched_tokens,
            "enable_chunked_prefill": enable_chunked_prefill,
            **{k: v for k, v in common.items() if k != "metrics"},  # the adaptive builder records, not its parts
        }
        self.calm_builder = FIFOIRBuilder(**inner)
        self.loaded_builder = self._make_loaded(loaded_policy, inner, options)

    @staticmethod
    def _make_loaded(name: str, inner: dict[str, Any], options: dict[str, Any]) -> BaseIRBuilder:
        cls = LOADED_POLICIES.get(name)
        if cls is None:
            raise ConfigError(f"loaded_policy must be one of {sorted(LOADED_POLICIES)} (got {name!r})")
        own = {k: v for k, v in options.items() if k not in _COMMON and k not in _MONITOR}
        foreign = sorted(set(own) - cls.option_names)
        if foreign:
            raise ConfigError(f"options {foreign} do not apply to loaded_policy={name!r}")
        return cls(**inner, **own)

    @property
    def name(self) -> str:
        return "adaptive"

    @property
    def mode(self) -> str:
        """The policy the last snapshot selected: ``"fifo"`` or the loaded policy's name."""
        return (self.loaded_builder if self.monitor.is_loaded else self.calm_builder).name

    @property
    def num_switches(self) -> int:
        return self.monitor.num_switches

    def order(self, state: SchedulerState) -> StepOrder:
        was_loaded = self.monitor.is_loaded
        is_loaded = self.monitor.update(Load.of(state))
        if self.metrics is not None:
            self._record(self.metrics, is_loaded, switched=is_loaded != was_loaded)
        inner = self.loaded_builder if is_loaded else self.calm_builder
        return replace(inner.order(state), policy=f"adaptive:{inner.name}")

    @staticmethod
    def _record(metrics: MetricsRegistry, is_loaded: bool, switched: bool) -> None:
        loaded = metrics.gauge("scheduler_adaptive_loaded", "1 while the adaptive scheduler runs its loaded policy")
        loaded.set(float(is_loaded))
        if switched:
            metrics.counter("scheduler_adaptive_switches_total", "adaptive scheduler mode switches").inc()
