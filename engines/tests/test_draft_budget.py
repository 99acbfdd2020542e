"""The speculation budget on plain numbers: the cost model, acceptance tracking, the draft plan."""

from __future__ import annotations

import argparse

import pytest
import torch

from sagellm.core.errors import InvalidRequestError
from sagellm.core.types import Request, SequenceState
from sagellm.engines.cli.options import speculative_settings
from sagellm.engines.engine.draft_budget import MIN_GAIN, AcceptanceTracker, plan_drafts
from sagellm.engines.engine.row_cost import row_grid
from sagellm.engines.engine.step_cost import StepCostModel
from sagellm.engines.runtime.input_batch import ChunkWork, build_input_batch

# The 4-bit CPU kernel's shape: rows in blocks of 4, so 1-4 rows cost about the same and 5 rows twice as much.
BLOCKED = {rows: 0.006 * (1 + (rows - 1) // 4) for rows in range(1, 65)}


def test_the_cost_model_follows_the_calibrated_shape_at_the_level_observed() -> None:
    cost = StepCostModel(BLOCKED)
    assert cost.predict(1) is None  # no step seen yet
    cost.observe(1, 0.010)  # 4 ms of scheduling and sampling on top of the forward pass
    assert cost.predict(1) == pytest.approx(0.010)
    assert cost.predict(4) == pytest.approx(0.010)  # same block of rows: the same cost
    assert cost.predict(5) == pytest.approx(0.016)
    assert cost.ratio(5, 1) == pytest.approx(1.6)
    cost.observe(5, 0.020)
    assert cost.predict(5) == pytest.approx(0.020) and cost.predict(6) == pytest.approx(0.020)


def test_without_calibration_the_observed_times_are_interpolated() -> None:
    cost = StepCostModel()
    cost.observe(1, 0.01)
    cost.observe(9, 0.03)
    assert cost.predict(5) == pytest.approx(0.01)  # the residual of the nearest row count seen below
    assert cost.observed == {1: 0.01, 9: 0.03}


def test_the_plan_drafts_up_to_the_cheap_block_when_acceptance_is_high() -> None:
    cost = StepCostModel(BLOCKED)
    cost.observe(1, 0.006)
    plan = plan_drafts([0.9], [8], base_rows=1, base_tokens=1, cost=cost)
    assert plan.lengths == [3]  # 4 rows: one block; 5-8 rows cost twice as much for less than twice the tokens
    assert plan.predicted_speedup == pytest.approx(1 + 0.9 + 0.81 + 0.729)


def test_low_acceptance_or_a_large_batch_turns_speculation_off() -> None:
    cost = StepCostModel({rows: 0.001 * rows for rows in range(1, 400)})  # compute-bound: every row costs
    cost.observe(64, 0.064)
    assert plan_drafts([0.9] * 64, [4] * 64, base_rows=64, base_tokens=64, cost=cost).lengths == [0] * 64
    flat = StepCostModel(BLOCKED)
    flat.observe(1, 0.006)
    assert plan_drafts([0.02], [4], base_rows=1, base_tokens=1, cost=flat).lengths == [0]


def test_the_plan_prefers_the_sequences_likely_to_keep_their_drafts() -> None:
    cost = StepCostModel(BLOCKED)
    cost.observe(2, 0.006)
    plan = plan_drafts([0.95, 0.3], [4, 4], base_rows=2, base_tokens=2, cost=cost)
    assert plan.lengths[0] >= 2 and plan.lengths[0] > plan.lengths[1] and sum(plan.lengths) == 2
    assert plan.predicted_speedup >= MIN_GAIN


def test_acceptance_is_learned_per_request_and_drifts_back_when_idle() -> None:
    tracker = AcceptanceTracker()
    prior = tracker.rate("new")
    for _ in range(10):
        tracker.record("copying", num_drafts=4, num_kept=4)
        tracker.record("chatting", num_drafts=4, num_kept=0)
    assert tracker.rate("copying") > 0.9 and tracker.rate("chatting") < 0.2
    low = tracker.rate("chatting")
    for _ in range(200):
        tracker.idle("chatting")
        tracker.idle_step()
    assert tracker.rate("chatting") > low and abs(tracker.rate("chatting") - prior) < 0.05


def test_row_grid_is_dense_where_kernels_block_rows_and_reaches_the_largest_step() -> None:
    grid = row_grid(320)
    assert grid[:17] == list(range(1, 18)) and grid[-1] == 320 and len(grid) <= 31
    assert grid == sorted(set(grid))


def test_a_verify_runs_its_drafts_as_decode_rows_with_a_logits_row_each() -> None:
    seq = SequenceState(Request("r", (5, 6, 7)))
    seq.token_ids.append(8)  # decoding: 4 tokens, 3 computed
    seq.block_ids = [3, 9]
    batch = build_input_batch([ChunkWork(seq, 3, 1, drafts=(11, 12, 13))], block_size=4, device=torch.device("cpu"))
    assert batch.input_ids.tolist() == [8, 11, 12, 13]
    assert batch.positions.tolist() == [3, 4, 5, 6]
    assert batch.meta.slot_mapping.tolist() == [15, 36, 37, 38]
    assert batch.logits_idx.tolist() == [0, 1, 2, 3]
    assert not batch.meta.prefills and batch.meta.decode is not None  # each row attends as a decode query
    assert batch.meta.decode.token_idx.tolist() == [0, 1, 2, 3]
    assert batch.meta.decode.context_lens is not None and batch.meta.decode.context_lens.tolist() == [4, 5, 6, 7]
    assert batch.meta.decode.block_table.tolist() == [[3, 9]] * 4


def _args(**given: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "speculative": None,
        "num_speculative_tokens": None,
        "speculative_option": [],
        "speculative_config": None,
    }
    return argparse.Namespace(**{**base, **given})


def test_the_cli_takes_vllms_speculative_config_or_the_separate_flags() -> None:
    vllm = speculative_settings(
        _args(speculative_config='{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 5}')
    )
    assert vllm == {"implementation": "ngram", "num_speculative_tokens": 3, "options": {"prompt_lookup_max": 5}}
    flags = speculative_settings(
        _args(speculative="ngram", num_speculative_tokens=3, speculative_option=["prompt_lookup_max=5"])
    )
    assert flags == vllm
    with pytest.raises(InvalidRequestError, match="not both"):
        speculative_settings(_args(speculative="ngram", speculative_config='{"method": "ngram"}'))
    with pytest.raises(InvalidRequestError, match='"method"'):
        speculative_settings(_args(speculative_config='{"num_speculative_tokens": 3}'))


def test_rows_past_the_calibration_cost_what_its_last_segment_says() -> None:
    """Prefill steps run more rows than the calibration covers: their extra rows are not free."""
    cost = StepCostModel({1: 0.01, 100: 0.05, 200: 0.09})
    cost.observe(1, 0.01)
    assert cost.predict(300) == pytest.approx(0.13)
    assert cost.calibrated(400) == pytest.approx(0.17)


def _flat_rows(seconds_per_row: float, fixed: float) -> StepCostModel:
    cost = StepCostModel({rows: fixed + seconds_per_row * rows for rows in range(1, 1025)})
    cost.observe(1, fixed + seconds_per_row)
    return cost


def test_draft_passes_are_paid_for() -> None:
    """A draft pass as dear as a target step cannot pay at 85 % acceptance; one a tenth as dear can."""
    target = _flat_rows(0.0001, 0.006)
    as_dear = _flat_rows(0.0001, 0.006)
    assert plan_drafts([0.85], [4], 1, 1, target, draft_cost=as_dear).lengths == [0]
    cheap = _flat_rows(0.00001, 0.0006)
    plan = plan_drafts([0.85], [4], 1, 1, target, draft_cost=cheap)
    assert plan.lengths == [4] and plan.predicted_speedup > 2


def test_a_long_catch_up_is_charged_to_the_first_draft_pass() -> None:
    target = _flat_rows(0.0001, 0.006)
    cheap = _flat_rows(0.0001, 0.0006)  # the same per row, a tenth of the fixed cost
    assert plan_drafts([0.85], [4], 1, 1, target, draft_cost=cheap, first_rows=[1.0]).lengths == [4]
    assert plan_drafts([0.85], [4], 1, 1, target, draft_cost=cheap, first_rows=[300.0]).lengths == [0]


def test_a_prefill_in_the_step_does_not_make_drafts_look_free() -> None:
    """Beside 512 prefill rows a draft pass is small, but the tokens it buys must beat decoding's cost."""
    target = _flat_rows(0.0001, 0.006)
    as_dear = _flat_rows(0.0001, 0.006)
    assert plan_drafts([0.85], [4], 513, 1, target, draft_cost=as_dear).lengths == [0]
    # verification without a model still rides along a prefill when it pays against decoding
    assert plan_drafts([0.85], [4], 513, 1, target).lengths == [4]
