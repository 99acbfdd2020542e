"""The sampler on plain tensors, no model.

Filters and penalties are checked against transformers' logits processors
(the conventions users know) on random logits, where no two values tie;
sampling itself is checked for reproducibility and for drawing from the
distribution it claims.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from sagellm.core.types import Request, SamplingParams, SequenceState
from sagellm.engines.runtime.sampler import Sampler, _filtered_probs

VOCAB = 50
_ids = itertools.count()


def seq(params: SamplingParams, prompt: tuple[int, ...] = (1, 2, 3), output: tuple[int, ...] = ()) -> SequenceState:
    state = SequenceState(Request(f"r{next(_ids)}", prompt, params))
    state.token_ids.extend(output)
    return state


def random_logits(rows: int = 1, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, VOCAB, generator=generator) * scale


def hf_probs(logits: torch.Tensor, *warpers: object) -> torch.Tensor:
    scores = logits.unsqueeze(0)
    for warper in warpers:
        scores = warper(torch.zeros(1, 1, dtype=torch.long), scores)  # type: ignore[operator]
    return torch.softmax(scores, dim=-1)[0]


# ------------------------------------------------------------------ greedy


def test_greedy_is_argmax_of_each_row() -> None:
    logits = random_logits(rows=6)
    seqs = [seq(SamplingParams(temperature=0.0)) for _ in range(6)]
    tokens = Sampler().sample(logits, seqs)
    assert [t.token_id for t in tokens] == logits.argmax(-1).tolist()


def test_greedy_ignores_seed_and_filters() -> None:
    logits = random_logits(seed=3)
    params = SamplingParams(temperature=0.0, top_k=5, top_p=0.5, min_p=0.3, seed=123)
    assert Sampler().sample(logits, [seq(params)])[0].token_id == int(logits.argmax())


# ------------------------------------------------------------------ filters vs transformers


@pytest.mark.parametrize("top_k", [1, 2, 7, VOCAB - 1])
def test_top_k_matches_transformers(top_k: int) -> None:
    transformers = pytest.importorskip("transformers.generation.logits_process")
    logits = random_logits(seed=top_k)[0]
    ours = _filtered_probs(logits, SamplingParams(top_k=top_k))
    theirs = hf_probs(logits, transformers.TopKLogitsWarper(top_k))
    assert int((ours > 0).sum()) == top_k
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.61, 0.9, 0.999])
def test_top_p_matches_transformers(top_p: float) -> None:
    transformers = pytest.importorskip("transformers.generation.logits_process")
    logits = random_logits(seed=int(top_p * 100))[0]
    ours = _filtered_probs(logits, SamplingParams(top_p=top_p))
    theirs = hf_probs(logits, transformers.TopPLogitsWarper(top_p, min_tokens_to_keep=1))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_top_p_keeps_the_token_that_crosses_the_threshold() -> None:
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    probs = _filtered_probs(logits, SamplingParams(top_p=0.7))  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    torch.testing.assert_close(probs, torch.tensor([0.625, 0.375, 0.0, 0.0]))


@pytest.mark.parametrize("min_p", [0.01, 0.1, 0.5])
def test_min_p_matches_transformers(min_p: float) -> None:
    transformers = pytest.importorskip("transformers.generation.logits_process")
    logits = random_logits(seed=int(min_p * 100))[0]
    ours = _filtered_probs(logits, SamplingParams(min_p=min_p))
    theirs = hf_probs(logits, transformers.MinPLogitsWarper(min_p, min_tokens_to_keep=1))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_filters_compose_in_vllm_order() -> None:
    """top-k, then top-p over what is left, then min-p relative to the best survivor."""
    transformers = pytest.importorskip("transformers.generation.logits_process")
    logits = random_logits(seed=11)[0]
    ours = _filtered_probs(logits, SamplingParams(top_k=10, top_p=0.8, min_p=0.1))
    theirs = hf_probs(
        logits,
        transformers.TopKLogitsWarper(10),
        transformers.TopPLogitsWarper(0.8),
        transformers.MinPLogitsWarper(0.1),
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_sampled_tokens_respect_top_k() -> None:
    logits = random_logits(seed=5)
    allowed = set(torch.topk(logits[0], 3).indices.tolist())
    sampler = Sampler()
    params = SamplingParams(temperature=1.5, top_k=3, seed=9)
    state = seq(params)
    drawn = {draw(sampler, [(state, logits[0])])[0] for _ in range(200)}
    assert drawn <= allowed and len(drawn) == 3


# ------------------------------------------------------------------ penalties


@pytest.mark.parametrize("penalty", [0.7, 1.3, 2.0])
def test_repetition_penalty_matches_transformers_over_prompt_and_output(penalty: float) -> None:
    transformers = pytest.importorskip("transformers.generation.logits_process")
    logits = random_logits(seed=7)[0]
    prompt, output = (3, 4, 4, 10), (10, 20, 21)
    state = seq(SamplingParams(temperature=0.0, repetition_penalty=penalty), prompt, output)
    ours = Sampler()._penalised(logits, state, state.request.sampling)
    seen = torch.tensor([list(prompt + output)])
    theirs = transformers.RepetitionPenaltyLogitsProcessor(penalty)(seen, logits.unsqueeze(0).clone())[0]
    torch.testing.assert_close(ours, theirs)
    assert not torch.equal(ours, logits)


def test_presence_and_frequency_penalties_follow_openai_over_output_only() -> None:
    logits = torch.zeros(VOCAB)
    params = SamplingParams(temperature=0.0, presence_penalty=0.5, frequency_penalty=0.25)
    state = seq(params, prompt=(7, 7, 7), output=(1, 1, 1, 2))
    scores = Sampler()._penalised(logits, state, params)
    expected = torch.zeros(VOCAB)
    expected[1] = -(0.25 * 3 + 0.5)
    expected[2] = -(0.25 * 1 + 0.5)
    torch.testing.assert_close(scores, expected)  # token 7 appears only in the prompt: untouched


def test_negative_presence_penalty_encourages_repeats() -> None:
    logits = torch.zeros(VOCAB)
    logits[5] = 1.0
    params = SamplingParams(temperature=0.0, presence_penalty=-2.0)
    state = seq(params, output=(9,))
    assert Sampler().sample(logits.unsqueeze(0), [state])[0].token_id == 9


def test_greedy_picks_the_argmax_after_penalties() -> None:
    logits = torch.zeros(1, VOCAB)
    logits[0, 4], logits[0, 6] = 2.0, 1.5
    params = SamplingParams(temperature=0.0, repetition_penalty=2.0)
    assert Sampler().sample(logits, [seq(params, prompt=(4,))])[0].token_id == 6  # 2.0 / 2 < 1.5


# ------------------------------------------------------------------ randomness


def draw(sampler: Sampler, rows: list[tuple[SequenceState, torch.Tensor]]) -> list[int]:
    """One token per sequence, appended to it (the next draw is at the next position)."""
    logits = torch.stack([row for _, row in rows])
    tokens = [t.token_id for t in sampler.sample(logits, [s for s, _ in rows])]
    for (state, _), token in zip(rows, tokens):
        state.token_ids.append(token)
    return tokens


def test_seed_reproduces_a_sample_whatever_shares_the_batch() -> None:
    params = SamplingParams(temperature=1.0, seed=1234)
    logits = random_logits(seed=1, scale=1.0)[0]

    alone, sampler = seq(params), Sampler()
    solo = [draw(sampler, [(alone, logits)])[0] for _ in range(30)]

    sampler = Sampler()
    target = seq(params)
    others = [seq(SamplingParams(temperature=1.0)), seq(SamplingParams(temperature=0.7, seed=99))]
    batched = []
    for step in range(30):
        noise = [(o, random_logits(seed=100 + step, scale=1.0)[0]) for o in others]
        order = [noise[0], (target, logits), noise[1]] if step % 2 else [(target, logits), *noise]
        tokens = draw(sampler, order)
        batched.append(tokens[order.index((target, logits))])
    assert batched == solo
    assert len(set(solo)) > 5  # a real distribution was sampled, not a constant


def test_different_seeds_give_different_samples() -> None:
    logits = random_logits(seed=2, scale=0.5)[0]
    runs = []
    for seed in (1, 2):
        state, sampler = seq(SamplingParams(seed=seed)), Sampler()
        runs.append([draw(sampler, [(state, logits)])[0] for _ in range(20)])
    assert runs[0] != runs[1]


def test_a_seeded_token_depends_on_the_seed_and_its_position_only() -> None:
    logits = random_logits(seed=4, scale=0.5)
    params = SamplingParams(seed=5)
    first = [Sampler().sample(logits, [seq(params, output=(7,) * n)])[0].token_id for n in range(12)]
    again = [Sampler().sample(logits, [seq(params, output=(9,) * n)])[0].token_id for n in range(12)]
    assert first == again and len(set(first)) > 3


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_samples_follow_the_temperature_scaled_distribution(temperature: float) -> None:
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().unsqueeze(0)
    expected = torch.softmax(probs.log() / temperature, dim=-1)
    state, sampler = seq(SamplingParams(temperature=temperature, seed=0)), Sampler()
    counts = torch.zeros(4)
    n = 4000
    for _ in range(n):
        counts[draw(sampler, [(state, logits[0])])[0]] += 1
    assert (counts / n - expected).abs().max() < 0.03  # ~4 standard errors at n = 4000


# ------------------------------------------------------------------ logprobs


def test_logprobs_are_log_softmax_of_the_penalised_scores() -> None:
    logits = random_logits(seed=8)
    params = SamplingParams(temperature=0.0, logprobs=3)
    token = Sampler().sample(logits, [seq(params)])[0]
    expected = torch.log_softmax(logits[0], dim=-1)
    assert token.logprob == pytest.approx(float(expected[token.token_id]), abs=1e-6)
    assert [i for i, _ in token.top_logprobs] == torch.topk(expected, 3).indices.tolist()
    assert token.top_logprobs[0][0] == token.token_id


def test_no_logprobs_unless_asked() -> None:
    token = Sampler().sample(random_logits(), [seq(SamplingParams(temperature=0.0))])[0]
    assert token.logprob is None and token.top_logprobs == ()


# ------------------------------------------------------------------ speculation


def agreeing(drafts: list[int] | tuple[int, ...], targets: list[int]) -> int:
    kept = 0
    while kept < len(drafts) and drafts[kept] == targets[kept]:
        kept += 1
    return kept


def test_verify_keeps_the_drafts_greedy_agrees_with() -> None:
    logits = random_logits(rows=4, seed=12)
    greedy = logits.argmax(dim=-1).tolist()
    state = seq(SamplingParams(temperature=0.0))
    drafts = [greedy[0], greedy[1], (greedy[2] + 1) % VOCAB]
    emitted = [t.token_id for t in Sampler().verify(logits, state, drafts, agreeing)]
    assert emitted == greedy[:3]  # two kept, the third replaced by the target's own


def test_verify_of_a_seeded_request_equals_sampling_it_token_by_token() -> None:
    """Whatever is drafted, a seeded request's tokens are those sampling without drafts gives."""
    params = SamplingParams(temperature=0.9, top_p=0.9, seed=21, presence_penalty=0.5)
    logits = random_logits(rows=5, seed=13, scale=1.5)
    plain_state = seq(params)
    plain = []
    for row in logits:
        plain.append(draw(Sampler(), [(plain_state, row)])[0])  # each row as the next position's logits
    for drafts in ([], plain[:4], plain[:2] + [(plain[2] + 1) % VOCAB, 0], [(plain[0] + 3) % VOCAB]):
        emitted = [t.token_id for t in Sampler().verify(logits[: len(drafts) + 1], seq(params), drafts, agreeing)]
        kept = agreeing(drafts, plain)
        assert emitted == plain[: kept + 1]


def test_verify_samples_exactly_the_target_distribution() -> None:
    """Rejection sampling is exact: over 20,000 verifies of a fixed draft, the first token follows p
    (chi-square), the draft survives with probability p(draft), and after a kept draft the next token
    follows the second row's distribution."""
    probs0 = torch.tensor([0.05, 0.4, 0.25, 0.2, 0.1])
    probs1 = torch.tensor([0.3, 0.1, 0.1, 0.3, 0.2])
    logits = torch.stack([probs0.log(), probs1.log()])
    params = SamplingParams(temperature=1.0)
    sampler, n = Sampler(), 20_000
    first, second = torch.zeros(5), torch.zeros(5)
    for _ in range(n):
        emitted = [t.token_id for t in sampler.verify(logits, seq(params), [2], agreeing)]
        first[emitted[0]] += 1
        if emitted[0] == 2:
            second[emitted[1]] += 1
    assert _chi_square(first, probs0) < CHI2_4DOF_999
    assert _chi_square(second, probs1) < CHI2_4DOF_999
    assert abs(first[2] / n - probs0[2]) < 4 * (0.25 * 0.75 / n) ** 0.5


CHI2_4DOF_999 = 18.47  # the 99.9th percentile of chi-square with 4 degrees of freedom


def _chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())
