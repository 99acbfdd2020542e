"""Value types: validation on construction, and the arithmetic properties engines rely on."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from sagellm.core.errors import InvalidRequestError
from sagellm.core.types import (
    BlockMove,
    ExecutionPlan,
    KVBlockMeta,
    KVLayout,
    KVPoolStats,
    MigrationPlan,
    PrefixHit,
    Request,
    SamplingParams,
    ScheduledChunk,
    SequenceState,
    SequenceStatus,
    SequenceView,
    StepOutput,
    Tier,
)

# --------------------------------------------------------------------------- SamplingParams

BAD_SAMPLING: list[tuple[str, Any]] = [
    ("max_tokens", 0),
    ("max_tokens", -3),
    ("max_tokens", 1.5),
    ("max_tokens", None),
    ("max_tokens", True),
    ("max_tokens", "16"),
    ("temperature", -0.1),
    ("temperature", math.nan),
    ("temperature", math.inf),
    ("temperature", "hot"),
    ("temperature", None),
    ("temperature", True),
    ("top_k", -1),
    ("top_k", 2.0),
    ("top_k", False),
    ("top_p", 0.0),
    ("top_p", 1.01),
    ("top_p", -0.5),
    ("top_p", math.nan),
    ("min_p", -0.01),
    ("min_p", 1.5),
    ("repetition_penalty", 0.0),
    ("repetition_penalty", -1.0),
    ("repetition_penalty", math.inf),
    ("presence_penalty", 2.5),
    ("presence_penalty", -2.01),
    ("frequency_penalty", 3.0),
    ("frequency_penalty", -math.inf),
    ("seed", 1.5),
    ("seed", "42"),
    ("seed", True),
    ("stop", "END"),  # a bare string would be split into characters
    ("stop", None),
    ("stop", ("ok", "")),
    ("stop", ("ok", 3)),
    ("stop_token_ids", (1, -2)),
    ("stop_token_ids", ("2",)),
    ("stop_token_ids", None),
    ("ignore_eos", "yes"),
    ("ignore_eos", 1),
    ("logprobs", -1),
    ("logprobs", 21),
    ("logprobs", 2.0),
    ("logprobs", False),
]


@pytest.mark.parametrize(("field", "value"), BAD_SAMPLING, ids=[f"{f}={v!r}" for f, v in BAD_SAMPLING])
def test_sampling_params_rejects_bad_value_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        SamplingParams(**{field: value})
    assert field in str(info.value)
    assert info.value.http_status == 400


def test_sampling_params_covers_every_field() -> None:
    """A new field must get a bad-value case above (and a check in __post_init__)."""
    assert {f for f, _ in BAD_SAMPLING} == {f.name for f in dataclasses.fields(SamplingParams)}


GOOD_SAMPLING: list[dict[str, Any]] = [
    {},
    {"max_tokens": 1, "temperature": 0.0},
    {"temperature": 2, "top_k": 50, "top_p": 0.9, "min_p": 0.05},
    {"top_p": 1.0, "min_p": 1.0, "repetition_penalty": 1.3},
    {"presence_penalty": -2.0, "frequency_penalty": 2.0},
    {"seed": 0, "logprobs": 0},
    {"logprobs": 20, "stop": ("\n\n",), "stop_token_ids": (0, 2), "ignore_eos": True},
]


@pytest.mark.parametrize("kwargs", GOOD_SAMPLING)
def test_sampling_params_accepts_valid_values(kwargs: dict[str, Any]) -> None:
    params = SamplingParams(**kwargs)
    for name, value in kwargs.items():
        assert getattr(params, name) == value


def test_sampling_params_lists_become_tuples() -> None:
    """JSON bodies carry lists; the frozen value must stay hashable."""
    params = SamplingParams(stop=["a", "b"], stop_token_ids=[7])  # type: ignore[arg-type]
    assert params.stop == ("a", "b") and params.stop_token_ids == (7,)
    assert hash(params) == hash(SamplingParams(stop=("a", "b"), stop_token_ids=(7,)))


def test_sampling_params_is_frozen_and_greedy_flag() -> None:
    params = SamplingParams(temperature=0.0)
    assert params.is_greedy and not SamplingParams().is_greedy
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.temperature = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- Request


def test_request_defaults() -> None:
    req = Request("r1", (1, 2, 3))
    assert req.sampling == SamplingParams()
    assert req.priority == 0 and req.namespace == "" and req.arrival_time == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"request_id": "", "prompt_token_ids": (1,)}, "request_id"),
        ({"request_id": 7, "prompt_token_ids": (1,)}, "request_id"),
        ({"request_id": "r", "prompt_token_ids": ()}, "prompt"),
        ({"request_id": "r", "prompt_token_ids": None}, "prompt"),
        ({"request_id": "r", "prompt_token_ids": "abc"}, "prompt"),
        ({"request_id": "r", "prompt_token_ids": (1,), "sampling": {"max_tokens": 3}}, "sampling"),
    ],
)
def test_request_rejects_bad_values(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field):
        Request(**kwargs)


def test_request_prompt_list_becomes_tuple() -> None:
    req = Request("r", [5, 6])  # type: ignore[arg-type]
    assert req.prompt_token_ids == (5, 6)
    hash(req)


# --------------------------------------------------------------------------- SequenceState


def test_sequence_state_token_arithmetic() -> None:
    """
    token_ids:  p p p p p g g        (5 prompt, 2 generated)
                |<- computed ->|^    (6 computed -> 1 uncomputed: a decode step)
    """
    seq = SequenceState(Request("s", (1, 2, 3, 4, 5)))
    assert seq.token_ids == [1, 2, 3, 4, 5] and isinstance(seq.token_ids, list)  # a mutable copy of the prompt
    assert seq.request_id == "s"
    assert seq.num_prompt_tokens == 5 and seq.num_tokens == 5 and seq.num_output_tokens == 0
    assert seq.num_uncomputed_tokens == 5 and seq.output_token_ids == []
    seq.num_computed_tokens = 5
    seq.token_ids += [10, 11]
    seq.num_computed_tokens = 6
    assert seq.num_tokens == 7 and seq.num_output_tokens == 2
    assert seq.output_token_ids == [10, 11]
    assert seq.num_uncomputed_tokens == 1


def test_sequence_state_keeps_explicit_token_ids_and_status() -> None:
    seq = SequenceState(Request("s", (1, 2)), token_ids=[1, 2, 9])
    assert seq.num_output_tokens == 1
    assert seq.status is SequenceStatus.WAITING and not seq.is_finished
    for status in (SequenceStatus.FINISHED_STOPPED, SequenceStatus.FINISHED_LENGTH, SequenceStatus.FINISHED_ABORTED):
        seq.status = status
        assert seq.is_finished
    seq.status = SequenceStatus.RUNNING
    assert not seq.is_finished


def test_sequence_states_do_not_share_lists() -> None:
    a, b = SequenceState(Request("a", (1,))), SequenceState(Request("b", (1,)))
    a.block_ids.append(3)
    assert b.block_ids == []


# --------------------------------------------------------------------------- KV values


@pytest.mark.parametrize(("dtype", "dtype_bytes"), [("float32", 4), ("float16", 2), ("bfloat16", 2), ("unknown", 4)])
def test_kv_layout_bytes_per_block(dtype: str, dtype_bytes: int) -> None:
    layout = KVLayout(num_layers=30, num_kv_heads=3, head_dim=64, block_size=16, num_blocks=100, dtype=dtype)
    assert layout.dtype_bytes == dtype_bytes
    assert not layout.is_quantized and layout.scale_bytes_per_block == 0
    # K and V, every layer, block_size positions, every head, head_dim values
    assert layout.bytes_per_block == 2 * 30 * 16 * 3 * 64 * dtype_bytes
    assert layout.bytes_per_token == layout.bytes_per_block / 16


def test_kv_layout_int8_counts_its_per_block_scales() -> None:
    layout = KVLayout(num_layers=30, num_kv_heads=3, head_dim=64, block_size=16, num_blocks=100, dtype="int8")
    assert layout.is_quantized and layout.dtype_bytes == 1
    # one float32 scale per block, layer and K/V (the kv_pool stores scales as [layers, 2, blocks])
    assert layout.scale_bytes_per_block == 2 * 30 * 4
    assert layout.bytes_per_block == 2 * 30 * 16 * 3 * 64 + 240 == 184_560
    assert layout.bytes_per_token == pytest.approx(11_535)
    bf16 = KVLayout(num_layers=30, num_kv_heads=3, head_dim=64, block_size=16, num_blocks=100, dtype="bfloat16")
    assert 0.5 < layout.bytes_per_block / bf16.bytes_per_block < 0.51


def test_kv_pool_stats_utilization_and_fragmentation() -> None:
    stats = KVPoolStats(
        num_blocks=10,
        num_free_blocks=6,
        num_used_blocks=4,
        num_shared_blocks=1,
        block_size=16,
        bytes_per_block=1024,
        num_used_tokens=48,
    )
    assert stats.utilization == pytest.approx(0.4)
    assert stats.fragmentation == pytest.approx(1 - 48 / 64)


@pytest.mark.parametrize(
    ("num_blocks", "used", "tokens", "utilization", "fragmentation"),
    [
        (0, 0, 0, 0.0, 0.0),  # empty pool: no division by zero
        (8, 0, 0, 0.0, 0.0),
        (8, 2, 0, 0.25, 0.0),  # token count unknown: no waste claimed
        (8, 2, 32, 0.25, 0.0),  # blocks exactly full
        (8, 8, 1, 1.0, 1 - 1 / 128),
    ],
)
def test_kv_pool_stats_edges(num_blocks: int, used: int, tokens: int, utilization: float, fragmentation: float) -> None:
    stats = KVPoolStats(num_blocks, num_blocks - used, used, 0, 16, 1, tokens)
    assert stats.utilization == pytest.approx(utilization)
    assert stats.fragmentation == pytest.approx(fragmentation)


def test_prefix_hit_migration_plan_and_meta() -> None:
    assert PrefixHit().num_matched_blocks == 0
    assert PrefixHit(8, (3, 4)).num_matched_blocks == 2
    plan = MigrationPlan((BlockMove(1, Tier.DEVICE, Tier.HOST), BlockMove(2, Tier.HOST, Tier.DISK, 5)))
    assert len(plan) == 2 and len(MigrationPlan()) == 0
    assert plan.moves[0].dst_block_id is None
    meta = KVBlockMeta(3)
    assert meta.tier is Tier.DEVICE and meta.ref_count == 0 and meta.prefix_hash is None
    assert Tier("host") is Tier.HOST


# --------------------------------------------------------------------------- plan / step values


def test_execution_plan_properties() -> None:
    plan = ExecutionPlan(
        chunks=(
            ScheduledChunk("a", start=0, num_tokens=10),
            ScheduledChunk("b", start=12, num_tokens=1, is_decode=True),
            ScheduledChunk("c", start=64, num_tokens=32),
        ),
        admitted=("a",),
    )
    assert plan.num_batched_tokens == 43
    assert [c.request_id for c in plan.prefill_batch] == ["a", "c"]
    assert [c.request_id for c in plan.decode_batch] == ["b"]
    assert not plan.is_empty


def test_execution_plan_emptiness() -> None:
    assert ExecutionPlan().is_empty and ExecutionPlan().num_batched_tokens == 0
    assert not ExecutionPlan(preempted=("x",)).is_empty, "a preemption alone is work to apply"


def test_sequence_view_and_step_output() -> None:
    view = SequenceView("a", num_tokens=20, num_computed_tokens=15, num_blocks_held=4)
    assert view.num_uncomputed_tokens == 5
    assert not StepOutput("a", (1,)).finished
    assert StepOutput("a", (), finish_reason="length").finished
