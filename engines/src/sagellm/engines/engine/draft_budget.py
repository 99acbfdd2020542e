"""How many drafts each sequence verifies this step: the count that maximises predicted tokens per second.

A sequence whose drafts are each kept with probability ``a`` (given the
ones before were) gains ``a**j`` expected tokens from its j-th draft, and
every draft adds a row to the step. Drafts of all sequences are taken in
order of expected gain for as long as predicted tokens per second rise:

    tokens(m) / T(rows + m),  tokens(m) = sampled sequences + sum of the m best gains

where ``T`` is the engine's measured step cost (:mod:`step_cost`). ``m = 0``
(no speculation) wins unless the best ``m`` beats it by ``MIN_GAIN``: a
large batch (rows no longer free) or low acceptance turns speculation off
by itself, and K adapts per sequence. Acceptance is learned per request,
starting from the engine-wide rate; a request not verified for a while
drifts back to it, and the engine-wide rate, while nothing is verified,
back to its prior: speculation that turned itself off tries again now and
then (one step in a few dozen), so a workload that turns repetitive gets
drafts again.

The per-request estimates are noisy, and the plan picks the sequences whose
estimate is highest, so on their own they promise more than verification
delivers (regression to the mean: at 16 chat sequences, ~15 % more). The
tracker therefore compares the kept drafts it predicted with those kept and
scales every gain by that ratio (``realism``), which keeps the plan honest
where its margin is thin: under load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sagellm.engines.engine.step_cost import StepCostModel

MIN_GAIN = 1.05  # predicted speed-up below this is within the step cost's noise: do not speculate
REALISM_PRIOR = 4.0  # drafts' worth of evidence that the estimates are right, before any verification
REALISM_DECAY = 0.99  # per verified sequence: the last ~100 verifications count
PRIOR_WEIGHT = 2.0  # pseudo-observations of the engine-wide rate behind each request's own
INITIAL_RATE = 0.5  # the engine-wide prior, worth ENGINE_PRIOR_WEIGHT observations
ENGINE_PRIOR_WEIGHT = 4.0
DECAY = 0.95  # per step without verification, evidence shrinks towards the prior (half-life ~14 steps)


@dataclass(slots=True)
class _Evidence:
    kept: float = 0.0
    rejected: float = 0.0


class AcceptanceTracker:
    """Per-request probability that a draft is kept, given the drafts before it were (geometric model)."""

    def __init__(self, prior: float | None = None) -> None:
        """``prior``: the engine-wide rate before any verification (a draft model's measured agreement)."""
        self.prior = INITIAL_RATE if prior is None else min(0.99, max(0.01, prior))
        self._requests: dict[str, _Evidence] = {}
        self._kept = 0.0
        self._rejected = 0.0
        self._predicted_kept = 0.0
        self._actual_kept = 0.0

    @property
    def realism(self) -> float:
        """Drafts kept over drafts the estimates predicted kept (decaying history), within [0.25, 1.5]."""
        ratio = (self._actual_kept + REALISM_PRIOR) / (self._predicted_kept + REALISM_PRIOR)
        return min(1.5, max(0.25, ratio))

    @property
    def engine_rate(self) -> float:
        kept = self._kept + ENGINE_PRIOR_WEIGHT * self.prior
        return kept / (self._kept + self._rejected + ENGINE_PRIOR_WEIGHT)

    def rate(self, request_id: str) -> float:
        own = self._requests.get(request_id, _Evidence())
        prior = self.engine_rate
        kept = own.kept + PRIOR_WEIGHT * prior
        return kept / (own.kept + own.rejected + PRIOR_WEIGHT)

    def record(self, request_id: str, num_drafts: int, num_kept: int) -> None:
        """A verification of ``num_drafts`` drafts kept the first ``num_kept``; the next one (if any) failed."""
        rate = self.rate(request_id)
        predicted = sum(rate**j for j in range(1, num_drafts + 1))
        self._predicted_kept = REALISM_DECAY * self._predicted_kept + predicted
        self._actual_kept = REALISM_DECAY * self._actual_kept + num_kept
        rejected = 1.0 if num_kept < num_drafts else 0.0
        own = self._requests.setdefault(request_id, _Evidence())
        own.kept += num_kept
        own.rejected += rejected
        self._kept += num_kept
        self._rejected += rejected

    def idle(self, request_id: str) -> None:
        """The request was not verified this step."""
        own = self._requests.get(request_id)
        if own is not None:
            own.kept *= DECAY
            own.rejected *= DECAY

    def idle_step(self) -> None:
        """No sequence was verified this step."""
        self._kept *= DECAY
        self._rejected *= DECAY

    def forget(self, request_id: str) -> None:
        self._requests.pop(request_id, None)


@dataclass(frozen=True, slots=True)
class DraftPlan:
    lengths: list[int]  # drafts to verify per candidate, in the order given
    predicted_speedup: float  # tokens/s with these drafts over tokens/s without; 1.0 when none


def plan_drafts(
    rates: Sequence[float],
    max_lengths: Sequence[int],
    base_rows: int,
    base_tokens: int,
    cost: StepCostModel,
    realism: float = 1.0,
    draft_cost: StepCostModel | None = None,
    first_rows: Sequence[float] | None = None,
) -> DraftPlan:
    """Draft counts per candidate sequence (each at most its ``max_lengths``) for a step of ``base_rows`` rows.

    ``realism`` scales every expected gain (see :attr:`AcceptanceTracker.realism`).
    ``draft_cost``: a draft model's pass cost by rows, where drafts are not
    free. Drafting ``j`` tokens takes ``j`` passes, the i-th over every
    sequence drafting at least ``i``, so the plan pays for each pass it adds.
    ``first_rows``: rows a sequence adds to the first pass (the tokens the
    draft model must catch up on; 1 when it is in step), default 1.

    A step that also prefills pays for its prefill rows whatever is
    drafted; those rows are left out of the comparison (the step is judged
    as if it decoded only), so drafts that verify cheaply beside a long
    prefill must still beat what decoding costs per token.

    Before the cost of any step is known, nothing is drafted: the first
    steps measure the plain cost first.
    """
    none = DraftPlan([0] * len(rates), 1.0)
    base_cost = cost.predict(base_rows)
    if base_cost is None or base_tokens < 1:
        return none
    gains = sorted(
        (
            (realism * rate**j, index)
            for index, (rate, most) in enumerate(zip(rates, max_lengths))
            for j in range(1, most + 1)
        ),
        reverse=True,
    )
    decode_cost = cost.predict(base_tokens) or base_cost if base_rows > base_tokens else base_cost
    base_speed = base_tokens / decode_cost
    best_m, best_speed, tokens = 0, base_speed, float(base_tokens)
    drafting = _DraftingCost(draft_cost, first_rows or [1.0] * len(rates))
    for m, (gain, index) in enumerate(gains, start=1):
        tokens += gain
        with_drafts = cost.predict(base_rows + m)
        if with_drafts is None:
            break
        step_cost = decode_cost + (with_drafts - base_cost) + drafting.add(index)
        if tokens / step_cost > best_speed:
            best_m, best_speed = m, tokens / step_cost
    if best_speed < base_speed * MIN_GAIN:
        return none
    lengths = [0] * len(rates)
    for _, index in gains[:best_m]:
        lengths[index] += 1
    return DraftPlan(lengths, best_speed / base_speed)


class _DraftingCost:
    """Seconds of the draft passes for the drafts planned so far (zero for a proposer without a model).

    Each sequence's drafts are added in order (gains fall with depth), so
    its first draft widens the first pass by its catch-up rows and its j-th
    draft the j-th pass by one row.
    """

    def __init__(self, cost: StepCostModel | None, first_rows: Sequence[float]) -> None:
        self.cost = cost
        self.first_rows = first_rows
        self.depth = [0] * len(first_rows)
        self.widths: list[float] = []
        self.total = 0.0

    def add(self, index: int) -> float:
        if self.cost is None:
            return 0.0
        level = self.depth[index]
        self.depth[index] += 1
        if level == len(self.widths):
            self.widths.append(0.0)
        width = self.widths[level]
        grown = width + (self.first_rows[index] if level == 0 else 1.0)
        self.total += self._pass(grown) - self._pass(width)
        self.widths[level] = grown
        return self.total

    def _pass(self, rows: float) -> float:
        assert self.cost is not None
        if rows <= 0:
            return 0.0
        whole = max(1, round(rows))
        return self.cost.predict(whole) or self.cost.calibrated(whole) or 0.0  # calibrated until a pass is seen
