"""Request life cycle on the real model: stopping, finish reasons, abort, typed errors.

The prompt asks SmolLM2 for the capital of France; its greedy answer is
"The capital of France is Paris." followed by ``<|im_end|>`` (EOS), which
gives fixed tokens to stop on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from sagellm.core.errors import ContextLengthExceededError, InvalidRequestError, SageLLMError, ServerOverloadedError
from sagellm.core.types import SamplingParams
from sagellm.engines import LLM, LLMEngine

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = "The capital of France is Paris."


def greedy(**kwargs: object) -> SamplingParams:
    return SamplingParams(temperature=0.0, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def question(llm: LLM) -> list[int]:
    return llm.tokenizer.encode_chat(QUESTION)


@pytest.fixture(scope="module")
def answer_ids(llm: LLM, question: list[int]) -> list[int]:
    result = llm.generate([question], greedy(max_tokens=20))[0]
    assert result.text == ANSWER and result.finish_reason == "stop"
    return result.token_ids


def test_eos_stops_with_reason_stop_and_is_not_in_the_text(llm: LLM, answer_ids: list[int]) -> None:
    assert answer_ids[-1] in llm.tokenizer.eos_token_ids
    assert llm.tokenizer.decode(answer_ids) == ANSWER


def test_chat_helper_renders_the_template(llm: LLM, answer_ids: list[int]) -> None:
    result = llm.chat(QUESTION, greedy(max_tokens=20))
    assert result.token_ids == answer_ids and result.text == ANSWER


def test_ignore_eos_runs_to_max_tokens(llm: LLM, question: list[int], answer_ids: list[int]) -> None:
    result = llm.generate([question], greedy(max_tokens=len(answer_ids) + 3, ignore_eos=True))[0]
    assert result.finish_reason == "length"
    assert result.token_ids[: len(answer_ids)] == answer_ids and len(result.token_ids) == len(answer_ids) + 3


def test_max_tokens_ends_with_reason_length(llm: LLM, question: list[int], answer_ids: list[int]) -> None:
    result = llm.generate([question], greedy(max_tokens=3))[0]
    assert result.finish_reason == "length"
    assert result.token_ids == answer_ids[:3]
    assert result.text == llm.tokenizer.decode(answer_ids[:3])


def test_stop_token_id_is_returned_but_not_in_the_text(llm: LLM, question: list[int], answer_ids: list[int]) -> None:
    france = answer_ids[3]  # "The", " capital", " of", " France"
    result = llm.generate([question], greedy(max_tokens=20, stop_token_ids=(france,)))[0]
    assert result.finish_reason == "stop"
    assert result.token_ids == answer_ids[:4]
    assert result.text == "The capital of"


@pytest.mark.parametrize(
    ("stop", "text"),
    [
        (("Paris",), "The capital of France is "),
        (("France is",), "The capital of "),  # a stop string spanning two tokens
        (("apital",), "The c"),  # inside one token: the token's text is cut
        (("never appears", "is P"), "The capital of France "),  # the first one found wins
    ],
)
def test_stop_strings_cut_the_text_before_the_match(
    llm: LLM, question: list[int], stop: tuple[str, ...], text: str
) -> None:
    result = llm.generate([question], greedy(max_tokens=20, stop=stop))[0]
    assert result.finish_reason == "stop"
    assert result.text == text


def test_stop_string_that_never_appears_changes_nothing(llm: LLM, question: list[int], answer_ids: list[int]) -> None:
    result = llm.generate([question], greedy(max_tokens=20, stop=("London",)))[0]
    assert result.token_ids == answer_ids and result.finish_reason == "stop" and result.text == ANSWER


def test_streamed_deltas_concatenate_to_the_text(llm: LLM, question: list[int]) -> None:
    deltas: list[str] = []
    result = llm.generate([question], greedy(max_tokens=20), on_output=lambda out: deltas.append(out.new_text))[0]
    assert "".join(deltas) == result.text == ANSWER


def test_streamed_deltas_hold_back_a_possible_stop_string(llm: LLM, question: list[int]) -> None:
    """ " France" must not be streamed before " is" shows whether "France is" matched."""
    deltas: list[str] = []
    params = greedy(max_tokens=20, stop=("France is",))
    result = llm.generate([question], params, on_output=lambda out: deltas.append(out.new_text))[0]
    assert "".join(deltas) == result.text == "The capital of "


@pytest.mark.parametrize(("max_tokens", "reason"), [(5, "length"), (20, "stop")])
def test_held_back_text_is_flushed_when_the_request_finishes(
    llm: LLM, question: list[int], answer_ids: list[int], max_tokens: int, reason: str
) -> None:
    deltas: list[str] = []
    params = greedy(max_tokens=max_tokens, stop=("a stop string that never matches",))
    result = llm.generate([question], params, on_output=lambda out: deltas.append(out.new_text))[0]
    assert result.finish_reason == reason
    assert "".join(deltas) == result.text == llm.tokenizer.decode(answer_ids[:max_tokens])


def test_mixed_sampling_params_in_one_batch(llm: LLM, question: list[int], answer_ids: list[int]) -> None:
    params = [greedy(max_tokens=20), greedy(max_tokens=2), greedy(max_tokens=20, stop=("Paris",))]
    results = llm.generate([question] * 3, params)
    assert [r.finish_reason for r in results] == ["stop", "length", "stop"]
    assert results[0].token_ids == answer_ids and results[1].token_ids == answer_ids[:2]
    assert results[2].text == "The capital of France is "


def test_results_keep_prompt_order_and_text_prompts_are_tokenized(llm: LLM) -> None:
    prompts = ["Once upon a time", "The capital of France is", "1, 2, 3,"]
    results = llm.generate(prompts, greedy(max_tokens=4, ignore_eos=True))
    for prompt, result in zip(prompts, results):
        assert result.prompt_token_ids == llm.tokenizer.encode(prompt)
        alone = llm.generate([prompt], greedy(max_tokens=4, ignore_eos=True))[0]
        assert result.token_ids == alone.token_ids


# ---------------------------------------------------------------------- abort


def test_abort_frees_kv_blocks_at_once(fresh_engine: LLMEngine, question: list[int]) -> None:
    engine = fresh_engine
    total = engine.kv.pool.layout.num_blocks
    rid = engine.add_request(question, greedy(max_tokens=50, ignore_eos=True))
    other = engine.add_request(question + [28], greedy(max_tokens=50, ignore_eos=True))
    for _ in range(3):
        engine.step()
    assert engine.num_running == 2 and engine.kv.pool.num_free_blocks < total
    assert engine.abort_request(rid) is True
    assert engine.abort_request(other) is True
    assert not engine.has_unfinished()
    assert engine.kv.num_free_blocks == total  # free, or cached and evictable
    assert engine.kv.pool.num_free_blocks + len(engine.kv._evictable) == total
    assert engine.metrics.counter("requests_aborted_total").value == 2
    assert engine.step() == []


def test_abort_of_a_waiting_request_and_of_unknown_ids(fresh_engine: LLMEngine, question: list[int]) -> None:
    engine = fresh_engine
    rid = engine.add_request(question, greedy(max_tokens=5), request_id="waiting")
    assert engine.num_waiting == 1
    assert engine.abort_request(rid) is True
    assert engine.abort_request(rid) is False  # already gone
    assert engine.abort_request("never-added") is False
    assert not engine.has_unfinished()
    assert engine.kv.pool.num_free_blocks == engine.kv.pool.layout.num_blocks


def test_abort_frees_blocks_without_prefix_cache(make_engine: Callable[..., LLMEngine], question: list[int]) -> None:
    engine = make_engine(prefix_cache={"enabled": False})
    rid = engine.add_request(question, greedy(max_tokens=50, ignore_eos=True))
    engine.step()
    engine.step()
    assert engine.kv.pool.num_free_blocks < engine.kv.pool.layout.num_blocks
    engine.abort_request(rid)
    assert engine.kv.pool.num_free_blocks == engine.kv.pool.layout.num_blocks


def test_request_id_can_be_reused_after_it_finished(fresh_engine: LLMEngine, question: list[int]) -> None:
    engine = fresh_engine
    engine.add_request(question, greedy(max_tokens=1), request_id="same")
    while engine.has_unfinished():
        engine.step()
    assert engine.add_request(question, greedy(max_tokens=1), request_id="same") == "same"


# ---------------------------------------------------------------------- errors


def test_empty_prompts_are_rejected(fresh_engine: LLMEngine) -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        fresh_engine.add_request("")
    with pytest.raises(InvalidRequestError, match="at least one token"):
        fresh_engine.add_request([])


@pytest.mark.parametrize("bad", [[5, 49152], [-1], [3, 1.5], [True]])
def test_token_ids_outside_the_vocabulary_are_rejected(fresh_engine: LLMEngine, bad: list[object]) -> None:
    with pytest.raises(InvalidRequestError, match="token ids"):
        fresh_engine.add_request(bad)  # type: ignore[arg-type]


def test_prompt_plus_max_tokens_beyond_the_context_is_rejected(fresh_engine: LLMEngine) -> None:
    limit = fresh_engine.max_model_len
    assert limit == 8192  # SmolLM2's context
    with pytest.raises(ContextLengthExceededError, match="maximum context length"):
        fresh_engine.add_request([1] * 10, greedy(max_tokens=limit - 9))


def test_max_model_len_from_config_bounds_requests(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine(model={"max_model_len": 64})
    assert engine.max_model_len == 64
    with pytest.raises(ContextLengthExceededError, match="maximum context length is 64 tokens"):
        engine.add_request([1] * 60, greedy(max_tokens=5))
    engine.add_request([1] * 60, greedy(max_tokens=4))  # exactly at the limit is fine


def test_request_larger_than_the_whole_pool_is_rejected(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine(kv_pool={"num_blocks": 4, "block_size": 16})
    with pytest.raises(ContextLengthExceededError, match="KV blocks"):
        engine.add_request([1] * 60, greedy(max_tokens=5))  # 65 tokens need 5 blocks


def test_duplicate_request_id_is_rejected(fresh_engine: LLMEngine) -> None:
    fresh_engine.add_request([1, 2, 3], greedy(max_tokens=2), request_id="dup")
    with pytest.raises(InvalidRequestError, match="already in use"):
        fresh_engine.add_request([4, 5, 6], greedy(max_tokens=2), request_id="dup")
    assert fresh_engine.num_waiting == 1


def test_rejected_requests_leave_no_trace(fresh_engine: LLMEngine) -> None:
    for bad in ([], [-1]):
        with pytest.raises(SageLLMError):
            fresh_engine.add_request(bad, request_id="r")
    assert not fresh_engine.has_unfinished()
    assert fresh_engine.add_request([1, 2], greedy(max_tokens=1), request_id="r") == "r"


def test_bad_sampling_params_are_typed_errors() -> None:
    with pytest.raises(InvalidRequestError):
        SamplingParams(temperature=-1.0)
    with pytest.raises(InvalidRequestError):
        SamplingParams(max_tokens=0)


def test_generate_rejects_mismatched_sampling_list(llm: LLM) -> None:
    with pytest.raises(ValueError, match="sampling params"):
        llm.generate(["a", "b"], [greedy(max_tokens=1)])


def test_full_waiting_queue_rejects_new_requests(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine(scheduler_ir={"max_waiting": 2})
    engine.add_request([1, 2, 3], SamplingParams(max_tokens=2))
    engine.add_request([1, 2, 4], SamplingParams(max_tokens=2))
    with pytest.raises(ServerOverloadedError):
        engine.add_request([1, 2, 5], SamplingParams(max_tokens=2))


def test_generate_feeds_more_prompts_than_the_waiting_queue_holds(
    llm: LLM, make_engine: Callable[..., LLMEngine]
) -> None:
    bounded = copy.copy(llm)
    bounded.engine = make_engine(scheduler_ir={"max_waiting": 2, "max_num_seqs": 2})
    results = bounded.generate([[1, 2, 3 + i] for i in range(7)], SamplingParams(max_tokens=2, ignore_eos=True))
    assert [r.prompt_token_ids[-1] for r in results] == [3 + i for i in range(7)]
    assert all(len(r.token_ids) == 2 for r in results)
