"""CoTDriver: runs what a CoTAccelerator decides -- answer probes, token budgets, self-consistency.

The accelerator only decides (is this a step boundary? is this answer
stable? do these samples agree?); this driver turns its decisions into
engine work, through three hooks of ``LLMEngine.step``:

* ``schedulable``: the running sequences the scheduler may see (a parent
  parked at its budget, waiting for its forced answer, is left out);
* ``after_compute``: the step's KV is written and nothing sampled yet, so
  every running sequence's KV covers all its tokens -- the moment to fork
  a probe (the reasoning so far + the probe suffix) or a self-consistency
  sample (the prompt), sharing that KV (``reasoning_fork.py``);
* ``process``: the step's outputs, rewritten -- a probe's and a sample's
  are consumed here, a parent's are held while its probe runs
  (``reasoning_track.py``), and a request that ends here gets its last
  output, with the probe's suffix and answer or the group's voted sample.

Internal sequences are named after their request (``<id>#probe3``,
``<id>#sample2``, ``<id>#prompt``) and never reach a caller.
"""

from __future__ import annotations

from collections.abc import Sequence

from sagellm.core.protocols import CoTAccelerator
from sagellm.core.types import AnswerProbe, ReasoningProgress, SamplingParams, SequenceState, SequenceStatus, StepOutput
from sagellm.engines.engine.esc_group import EscGroup, SampleResult
from sagellm.engines.engine.probe_reading import ProbeReading, answer_settled, read_probe
from sagellm.engines.engine.reasoning_fork import fork_prefix, fork_sequence, release_fork
from sagellm.engines.engine.reasoning_host import ReasoningHost
from sagellm.engines.engine.reasoning_options import ReasoningOptions
from sagellm.engines.engine.reasoning_output import ReasoningOutput, ReasoningReport, merged, with_report
from sagellm.engines.engine.reasoning_track import ProbeFlight, ProbePoint, Track


class CoTDriver:
    def __init__(self, accelerator: CoTAccelerator, host: ReasoningHost) -> None:
        self.accelerator = accelerator
        self.host = host
        self.suffix_ids = tuple(host.tokenizer.encode(accelerator.probe_suffix, add_special_tokens=False))
        self._probe_sampling = SamplingParams(max_tokens=accelerator.max_probe_tokens, temperature=0.0, logprobs=0)
        self._tracks: dict[str, Track] = {}  # reasoning sequences: requests and samples
        self._probes: dict[str, Track] = {}  # probe id -> the track it probes
        self._groups: dict[str, EscGroup] = {}
        self._parked: set[str] = set()
        self._retired: set[str] = set()  # ended during this step's ``process``: their outputs are stale

    # ------------------------------------------------------------------ requests
    def budget_prompt(self, prompt: str, options: ReasoningOptions) -> str:
        """The prompt asking for brevity, when a budget is set (the caller applies it where it has the text)."""
        return prompt if options.budget is None else self.accelerator.budget_prompt(prompt, options.budget)

    def track(self, seq: SequenceState, options: ReasoningOptions) -> None:
        """Serve ``seq`` (just added, waiting) with ``options``."""
        group = None
        if options.is_sampled:
            window = max(1, self.accelerator.esc_window)
            self._groups[seq.request_id] = EscGroup(seq, options, window)
            group = seq.request_id
        self._tracks[seq.request_id] = Track(seq, options, group)

    def in_use(self, request_id: str) -> bool:
        """Whether the id still names a request here (a group outlives its first sample's sequence)."""
        return request_id in self._tracks or request_id in self._groups or request_id in self._probes

    def is_internal(self, request_id: str) -> bool:
        """A probe or a sample after the first: no caller asked for it."""
        track = self._tracks.get(request_id)
        return request_id in self._probes or (track is not None and track.group not in (None, request_id))

    def abort(self, request_id: str) -> bool:
        """Cancel everything the request started (probes, samples, the prompt keeper); False if unknown here."""
        group = self._groups.pop(request_id, None)
        if group is not None:
            for sample_id in list(group.running):
                self._cancel_sample(group, sample_id)
            self._release_keeper(group)
            return True
        track = self._tracks.get(request_id)
        if track is None:
            return False
        self._cancel_probes(track)
        self._forget(track)
        return True

    # ------------------------------------------------------------------ step hooks
    def schedulable(self, running: list[SequenceState]) -> list[SequenceState]:
        if not self._parked:
            return running
        return [seq for seq in running if seq.request_id not in self._parked]

    def after_compute(self) -> None:
        """Fork what was asked for, now that every sequence that ran has KV for all its tokens."""
        for track in list(self._tracks.values()):
            if track.waiting:
                self._fork_probes(track)
        for group in list(self._groups.values()):
            if group.keeper is None:
                self._start_group(group)
            elif group.wanted():
                self._draw(group)

    def process(self, outputs: Sequence[StepOutput]) -> list[StepOutput]:
        """The step's outputs as callers see them."""
        self._retired.clear()
        emitted: list[StepOutput] = []
        for output in outputs:
            request_id = output.request_id
            if request_id in self._retired:
                continue
            if request_id in self._probes:
                self._probe_output(self._probes[request_id], output, emitted)
            elif request_id in self._tracks:
                self._track_output(self._tracks[request_id], output, emitted)
            else:
                emitted.append(output)
        return emitted

    # ------------------------------------------------------------------ a reasoning sequence's outputs
    def _track_output(self, track: Track, output: StepOutput, emitted: list[StepOutput]) -> None:
        track.text += output.new_text
        if output.finished:  # on its own (EOS, a stop string, max_tokens): what it said stands
            self._cancel_probes(track)
            final = merged([*track.held, output])
            track.held = []
            answer = self.accelerator.extract_answer(track.text)
            generated = track.seq.num_output_tokens
            self._close(track, final, answer, "finished", None, generated, generated, emitted)
            return
        if track.holding:
            track.held.append(output)
        else:
            self._send(track, [output], emitted)
        self._plan_probe(track, output)

    def _plan_probe(self, track: Track, output: StepOutput) -> None:
        """After a new output: the budget's forced probe, or a probe where the accelerator sees a step end."""
        if track.capped:
            return
        num_tokens = track.seq.num_output_tokens
        budget = track.options.budget
        if budget is not None and num_tokens >= budget:
            track.capped = True
            track.waiting.append(ProbePoint(num_tokens, self.host.generated_text(track.request_id), forced=True))
        elif track.options.early_exit:
            text = self.host.generated_text(track.request_id)
            if self.accelerator.should_probe(ReasoningProgress(track.request_id, text, output.new_text, num_tokens)):
                track.waiting.append(ProbePoint(num_tokens, text))

    def _send(self, track: Track, outputs: list[StepOutput], emitted: list[StepOutput]) -> None:
        if not outputs:
            return
        output = merged(outputs)
        track.num_chars_sent += len(output.new_text)
        if track.group is None:
            emitted.append(output)
        else:
            track.sent.append(output)

    # ------------------------------------------------------------------ probes
    def _fork_probes(self, track: Track) -> None:
        """Fork the probe points the parent's KV now reaches, in order."""
        seq = track.seq
        while track.waiting:
            point = track.waiting[0]
            fork_at = seq.num_prompt_tokens + point.num_tokens
            if seq.status is not SequenceStatus.RUNNING or seq.num_computed_tokens < fork_at:
                return  # preempted, or its KV does not reach the point yet
            if fork_at + len(self.suffix_ids) >= self.host.max_model_len and not point.forced:
                track.waiting.pop(0)  # no room left to probe (a forced point waits for the length limit)
                continue
            probe_id = f"{track.request_id}#probe{track.num_probes}"
            fork = fork_sequence(self.host.kv, seq, probe_id, fork_at, self.suffix_ids, self._probe_sampling)
            if fork is None:
                return  # no block for the tail copy now; the next step tries again
            track.waiting.pop(0)
            track.flights.append(ProbeFlight(fork, point))
            track.num_probes += 1
            track.num_probe_tokens += len(self.suffix_ids)
            self._probes[probe_id] = track
            if point.forced:
                self._parked.add(track.request_id)  # nothing it decodes from now on can be part of its output
            self.host.spawn(fork.seq)

    def _probe_output(self, track: Track, output: StepOutput, emitted: list[StepOutput]) -> None:
        flight = next(f for f in track.flights if f.request_id == output.request_id)
        flight.token_ids.extend(output.new_token_ids)
        flight.logprobs.extend(output.logprobs or (0.0,) * len(output.new_token_ids))
        if not output.finished and not answer_settled(self.accelerator, self.host.tokenizer, flight.token_ids):
            return
        self._retire(track, flight)  # the answer is complete: decoding on would only cost
        flight.reading = read_probe(self.accelerator, self.host.tokenizer, flight.token_ids, flight.logprobs)
        self._resolve(track, emitted)

    def _resolve(self, track: Track, emitted: list[StepOutput]) -> None:
        """Show the accelerator every read probe in fork order; stop at the first it finds stable."""
        while track.flights and track.flights[0].reading is not None:
            flight = track.flights.pop(0)
            reading = flight.reading
            assert reading is not None
            if flight.point.forced:
                self._stop(track, flight, reading, "budget", emitted)
                return
            point = flight.point.num_tokens
            probe = AnswerProbe(track.request_id, point, reading.text, reading.answer, reading.confidence)
            if self.accelerator.observe_probe(probe):
                self._stop(track, flight, reading, "probe", emitted)
                return
            self._send(track, track.release_held(), emitted)

    def _stop(
        self, track: Track, flight: ProbeFlight, reading: ProbeReading, why: str, emitted: list[StepOutput]
    ) -> None:
        """End the sequence with the probe's answer: reasoning up to the fork, the suffix, the answer."""
        seq = track.seq
        generated = seq.num_output_tokens
        self._cancel_probes(track)
        track.held = []
        self.host.end(track.request_id)
        self._retired.add(track.request_id)
        token_ids = self.suffix_ids + reading.answer_token_ids
        reasoning = flight.point.num_tokens
        text = flight.point.text[track.num_chars_sent :] + self.accelerator.probe_suffix + reading.answer_text
        logprobs = top = None
        asked = seq.request.sampling.logprobs
        if asked is not None:  # the suffix was forced (probability 1), the answer the probe's own
            logprobs = (0.0,) * len(self.suffix_ids) + tuple(flight.logprobs[: len(reading.answer_token_ids)])
            top = tuple(() for _ in token_ids) if asked else None
        final = StepOutput(
            request_id=track.request_id,
            new_token_ids=token_ids,
            new_text=text,
            finish_reason="stop",
            num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=reasoning + len(token_ids),
            num_cached_tokens=seq.num_cached_tokens,
            logprobs=logprobs,
            top_logprobs=top,
        )
        self._close(track, final, reading.answer, why, reading.confidence, reasoning, generated, emitted)

    def _cancel_probes(self, track: Track) -> None:
        """Every probe of the track, in flight or asked for, gone (their KV freed)."""
        for flight in track.flights:
            self._retire(track, flight)
        track.flights = []
        track.waiting = []
        self._parked.discard(track.request_id)

    def _retire(self, track: Track, flight: ProbeFlight) -> None:
        """A probe's sequence ends (done, or no longer wanted): free it, count what it ran."""
        if flight.request_id not in self._probes:
            return
        del self._probes[flight.request_id]
        self.host.drop(flight.request_id)  # a no-op for one that finished on its own
        self._retired.add(flight.request_id)
        release_fork(self.host.kv, flight.fork)
        track.num_probe_tokens += len(flight.token_ids)

    # ------------------------------------------------------------------ the end of a reasoning sequence
    def _close(
        self,
        track: Track,
        final: StepOutput,
        answer: str | None,
        why: str,
        confidence: float | None,
        num_reasoning: int,
        num_generated: int,
        emitted: list[StepOutput],
    ) -> None:
        self._forget(track)
        if track.group is None:
            report = ReasoningReport(
                answer=answer,
                stopped_by=why,
                num_reasoning_tokens=num_reasoning,
                num_probes=track.num_probes,
                num_probe_tokens=track.num_probe_tokens,
                num_generated_tokens=num_generated,
                answers=(answer,),
                confidence=confidence,
            )
            emitted.append(with_report(final, report))
            return
        outputs = [*track.sent, final]
        result = SampleResult(
            request_id=track.request_id,
            text="".join(o.new_text for o in outputs),
            token_ids=tuple(t for o in outputs for t in o.new_token_ids),
            finish_reason=final.finish_reason,
            answer=answer,
            num_reasoning_tokens=num_reasoning,
            num_output_tokens=final.num_output_tokens,
            num_generated_tokens=num_generated,
            num_probes=track.num_probes,
            num_probe_tokens=track.num_probe_tokens,
            confidence=confidence,
        )
        group = self._groups.get(track.group)
        if group is not None:
            self._sample_finished(group, result, emitted)

    def _forget(self, track: Track) -> None:
        self._tracks.pop(track.request_id, None)
        self._parked.discard(track.request_id)
        self.accelerator.release(track.request_id)

    # ------------------------------------------------------------------ self-consistency
    def _start_group(self, group: EscGroup) -> None:
        """Once the first sample's prompt is computed: keep its KV, draw the rest of the first window from it."""
        root = group.root
        if root.status is not SequenceStatus.RUNNING or root.num_computed_tokens < root.num_prompt_tokens:
            return
        keeper = fork_prefix(self.host.kv, root, f"{group.request_id}#prompt", root.num_prompt_tokens)
        if keeper is not None:
            group.keeper = keeper
            self._draw(group)

    def _draw(self, group: EscGroup) -> None:
        keeper = group.keeper
        if keeper is None:
            return
        prompt = keeper.seq.token_ids
        for _ in range(group.wanted()):
            sample_id, sampling = group.next_sample()
            # Each sample runs the prompt's last token itself: the logits its first token is drawn from.
            fork = fork_sequence(self.host.kv, keeper.seq, sample_id, len(prompt) - 1, prompt[-1:], sampling)
            if fork is None:
                return  # no block free for the tail copy: the next step draws it
            group.started(sample_id)
            self._tracks[sample_id] = Track(fork.seq, group.options, group.request_id)
            release_fork(self.host.kv, fork)  # the keeper pins the prompt's cached blocks for every sample
            self.host.spawn(fork.seq)

    def _sample_finished(self, group: EscGroup, result: SampleResult, emitted: list[StepOutput]) -> None:
        group.finished(result)
        agreed = self.accelerator.consistent(group.answers)
        if agreed is not None:
            self._end_group(group, agreed, "consistency", emitted)
        elif group.exhausted or (group.keeper is None and not group.running):
            self._end_group(group, self.accelerator.vote(group.answers), "samples", emitted)
        else:
            self._draw(group)

    def _end_group(self, group: EscGroup, answer: str | None, why: str, emitted: list[StepOutput]) -> None:
        for sample_id in list(group.running):
            self._cancel_sample(group, sample_id)
        self._release_keeper(group)
        del self._groups[group.request_id]
        winner = group.winner(answer)
        results = group.results
        report = ReasoningReport(
            answer=answer,
            stopped_by=why,
            num_reasoning_tokens=winner.num_reasoning_tokens,
            num_probes=sum(r.num_probes for r in results),
            num_probe_tokens=sum(r.num_probe_tokens for r in results),
            num_samples=group.num_drawn,
            num_cancelled=group.num_cancelled,
            num_generated_tokens=sum(r.num_generated_tokens for r in results) + group.num_cancelled_tokens,
            answers=tuple(group.answers),
            confidence=winner.confidence,
        )
        root = group.root
        final = ReasoningOutput(
            request_id=group.request_id,
            new_token_ids=winner.token_ids,
            new_text=winner.text,
            finish_reason=winner.finish_reason,
            num_prompt_tokens=root.num_prompt_tokens,
            num_output_tokens=len(winner.token_ids),
            num_cached_tokens=root.num_cached_tokens,
            reasoning=report,
        )
        emitted.append(final)

    def _cancel_sample(self, group: EscGroup, sample_id: str) -> None:
        group.running.remove(sample_id)
        track = self._tracks.get(sample_id)
        if track is None:
            return
        self._cancel_probes(track)
        group.num_cancelled += 1
        group.num_cancelled_tokens += track.seq.num_output_tokens
        self._forget(track)
        self.host.drop(sample_id)
        self._retired.add(sample_id)

    def _release_keeper(self, group: EscGroup) -> None:
        if group.keeper is not None:
            self.host.kv.release(group.keeper.seq)
            release_fork(self.host.kv, group.keeper)
            group.keeper = None
