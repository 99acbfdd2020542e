"""A self-consistency group: samples of one prompt, drawn a window at a time, voting on an answer.

ESC (early-stopping self-consistency) draws samples ``esc_window`` at a
time and stops when a window agrees. Here ``esc_window`` samples are in
flight at once and a finished one is replaced by a fresh one, so the
engine's batch stays full; the accelerator's ``consistent`` is asked after
every finish with the answers in finish order, and when it agrees the
samples still running are cancelled. Without agreement the group ends
when ``num_samples`` have finished, with the accelerator's ``vote`` over
every answer drawn.

Every sample shares the prompt's KV through a *keeper*: a fork of the
first sample taken when its prefill completed, which holds the prompt's
blocks (and never runs), so samples drawn after the first ones finished
still fork without recomputing anything but the prompt's last token (each
sample needs that token's logits of its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sagellm.core.types import SamplingParams, SequenceState
from sagellm.engines.engine.reasoning_fork import Fork
from sagellm.engines.engine.reasoning_options import ReasoningOptions

SEED_SPAN = 2**64  # sample i's seed is the request's + i, wrapped into the 64-bit range clients send


@dataclass(frozen=True, slots=True)
class SampleResult:
    """A finished sample: its output and the answer it gave (None: none could be read)."""

    request_id: str
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str | None
    answer: str | None
    num_reasoning_tokens: int
    num_output_tokens: int
    num_generated_tokens: int  # all it decoded, tokens a probe's answer made moot included
    num_probes: int = 0
    num_probe_tokens: int = 0
    confidence: float | None = None


@dataclass(slots=True)
class EscGroup:
    """The bookkeeping of one group; the driver forks, cancels and asks the accelerator."""

    root: SequenceState  # sample 0: the request itself, which prefills the prompt
    options: ReasoningOptions  # every sample's (early exit and budget apply to each)
    window: int
    keeper: Fork | None = None
    running: list[str] = field(default_factory=list)  # sample ids in flight
    num_drawn: int = 1
    results: list[SampleResult] = field(default_factory=list)  # in finish order
    num_cancelled: int = 0
    num_cancelled_tokens: int = 0

    def __post_init__(self) -> None:
        self.running.append(self.root.request_id)

    @property
    def request_id(self) -> str:
        return self.root.request_id

    @property
    def num_samples(self) -> int:
        return self.options.num_samples

    def sample_id(self, index: int) -> str:
        return self.request_id if index == 0 else f"{self.request_id}#sample{index}"

    def wanted(self) -> int:
        """Samples to start now so that ``window`` run at once, ``num_samples`` at most in all."""
        return max(0, min(self.window - len(self.running), self.num_samples - self.num_drawn))

    def next_sample(self) -> tuple[str, SamplingParams]:
        """The id and sampling of the next sample to draw (``started`` counts it once it runs)."""
        return self.sample_id(self.num_drawn), self._sampling(self.num_drawn)

    def started(self, request_id: str) -> None:
        self.num_drawn += 1
        self.running.append(request_id)

    def finished(self, result: SampleResult) -> None:
        self.running.remove(result.request_id)
        self.results.append(result)

    @property
    def answers(self) -> list[str | None]:
        return [r.answer for r in self.results]

    @property
    def exhausted(self) -> bool:
        """Every sample was drawn and has finished: the vote is what it is."""
        return not self.running and self.num_drawn >= self.num_samples

    def winner(self, answer: str | None) -> SampleResult:
        """The first sample to finish with ``answer`` (its text is the request's output)."""
        return next((r for r in self.results if r.answer == answer), self.results[0])

    def _sampling(self, index: int) -> SamplingParams:
        params = self.root.request.sampling
        if params.seed is None:
            return params
        return replace(params, seed=(params.seed + index) % SEED_SPAN)
