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
    ttft_s, tpot_s, oldest = targets.ttft_s, targets.tpot_s, now - targets.max_wait_s
    for view in views:
        arrival = view.arrival_time
        if arrival < oldest:
            starving.append(view)
            continue
        num_tokens = view.num_tokens
        work = num_tokens - (view.num_cached_tokens if is_waiting else view.num_computed_tokens)
        # SLOTargets.next_token_due, inline: this loop runs over the whole queue every step
        if num_tokens > view.num_prompt_tokens:
            last = view.last_token_time
            due = (now if last is None else last) + tpot_s
        else:
            due = arrival + ttft_s
        keyed.append((due - work * seconds_per_token, due, work, view))
    keyed.sort(key=itemgetter(0))  # stable: ties keep snapshot order
    starving.sort(key=_by_arrival)
    yield from starving
    ahead = work_ahead + sum(
        v.num_tokens - (v.num_cached_tokens if is_waiting else v.num_computed_tokens) for v in starving
    )
    late: list[SequenceView] = []
    per_step, step_seconds = drain.tokens_per_step, drain.step_seconds
    for _, due, work, view in keyed:
        # finish = now + ceil(tokens / per_step) × step_seconds, inline: the walk covers the queue when most is late
        if now + -(-(ahead + work) // per_step) * step_seconds <= due:
            ahead += work
            yield view
        else:
            late.append(view)
    late.sort(key=_by_arrival)
    yield from late


def _by_arrival(view: SequenceView) -> float:
    return view.arrival_time
