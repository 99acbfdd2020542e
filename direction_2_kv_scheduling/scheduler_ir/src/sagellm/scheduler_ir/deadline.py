"""When each sequence's next token is due, and which requests can still make it.

One clock for both SLOs: every sequence has a *next token* that is due at
some time.

* no output yet (waiting, or prefilling): the first token, due
  ``arrival_time + TTFT``;
* output already (decoding, or preempted and back in line): the next one,
  due ``last_token_time + TPOT`` (``now + TPOT`` when the engine does not
  report ``last_token_time``: the step that made the last token just ended).

In a batching engine a prompt's tokens are spread over steps whose length
the whole batch sets, and the requests ahead of it drain first. So time to
compute is counted in steps of this one's size (:class:`Drain`), and a
request's finish time includes the work ranked before it::

    now                                              due
     |-- ahead (ranked before) --|-- own tokens --|  |   feasible
     |-- ahead -----------------------|-- own tokens --| late
        ceil(tokens / prefill_per_step) × step_seconds

Ranking, first to last:

    starving  waited longer than max_wait         by arrival (bounds every wait)
    feasible  finishes before its due time        least slack first
    late      would miss even if ranked here      by arrival

Slack is ``due - now - own compute``. Putting the hopeless after the
feasible keeps an overload from cascading: serving a request that misses
anyway makes the ones behind it miss too, which is how plain
earliest-deadline-first degrades. The starving tier keeps that choice from
turning into starvation. The ranking is lazy past the sort: admission stops
at its first misfit, so the feasibility walk rarely reaches the tail.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter

from sagellm.core.types import SequenceView


@dataclass(frozen=True, slots=True)
class SLOTargets:
    """Latency targets in seconds."""

    ttft_s: float
    tpot_s: float
    max_wait_s: float

    def next_token_due(self, view: SequenceView, now: float) -> float:
        if view.num_tokens > view.num_prompt_tokens:
            last = now if view.last_token_time is None else view.last_token_time
            return last + self.tpot_s
        return view.arrival_time + self.ttft_s


@dataclass(frozen=True, slots=True)
class Drain:
    """How fast queued prefill drains this step: prefill tokens per step, seconds per step."""

    tokens_per_step: int
    step_seconds: float

    def finish_time(self, now: float, num_tokens: int) -> float:
        """When ``num_tokens`` of prefill, started now, are done."""
        return now + math.ceil(num_tokens / self.tokens_per_step) * self.step_seconds


def rank_by_slack(
    views: Iterable[SequenceView],
    targets: SLOTargets,
    drain: Drain,
    now: float,
    is_waiting: bool,
    work_ahead: int = 0,
) -> Iterator[SequenceView]:
    """``views`` as starving, feasible (least slack first), late; lazy after the initial sort.

    ``work_ahead`` is prefill already ranked before all of ``views`` (running
    prefills, when ranking the waiting queue); a waiting sequence's work
    starts at its cached prefix.
    """
    starving: list[SequenceView] = []
    keyed: list[tuple[float, float, int, SequenceView]] = []
    seconds_per_token = drain.step_seconds / drain.tokens_per_step
    for view in views:
        if now - view.arrival_time > targets.max_wait_s:
            starving.append(view)
            continue
        start = view.num_cached_tokens if is_waiting else view.num_computed_tokens
        work = view.num_tokens - start
        due = targets.next_token_due(view, now)
        keyed.append((due - work * seconds_per_token, due, work, view))
    keyed.sort(key=itemgetter(0))  # stable: ties keep snapshot order
    starving.sort(key=_by_arrival)
    yield from starving
    ahead = work_ahead + sum(
        v.num_tokens - (v.num_cached_tokens if is_waiting else v.num_computed_tokens) for v in starving
    )
    late: list[SequenceView] = []
    for _, due, work, view in keyed:
        if drain.finish_time(now, ahead + work) <= due:
            ahead += work
            yield view
        else:
            late.append(view)
    late.sort(key=_by_arrival)
    yield from late


def _by_arrival(view: SequenceView) -> float:
    return view.arrival_time
