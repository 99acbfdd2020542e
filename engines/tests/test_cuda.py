"""The engine on a CUDA device (skipped where torch sees none).

float32 on the GPU (TF32 is off by default for float32 matmuls) must still
give transformers' greedy tokens; its logits differ from the CPU reference
only by summation order, so the tolerance is 1e-3 rather than 1e-4.
bfloat16, the default dtype on GPUs, must run, finish and be deterministic.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engines_helpers import NUM_NEW_TOKENS, Reference, drive

from sagellm.core.types import SamplingParams
from sagellm.engines import LLM

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_float32_matches_transformers(
    model_path: Path, prompts: list[list[int]], hf_reference: list[Reference]
) -> None:
    llm = LLM(
        model={"path": str(model_path), "dtype": "float32", "device": "cuda"},
        kv_pool={"num_blocks": 160},
        show_progress=False,
    )
    assert llm.engine.runner.device.type == "cuda"
    assert llm.engine.kv.pool.kv_tensors(0)[0].device.type == "cuda"
    result = drive(llm.engine, prompts, arrivals=[0, 0, 1, 2, 3, 5, 8, 13], references=hf_reference)
    for i, ref in enumerate(hf_reference):
        assert result.token_ids[i] == ref.token_ids, f"prompt {i}"
    assert result.probe.rows_checked >= len(prompts) * NUM_NEW_TOKENS
    worst = max(result.probe.max_abs_err.values())  # against transformers' float64 rows on the CPU
    assert worst <= 1e-3, f"max abs logits error {worst:.2e}"  # CUDA's fp32 kernels: no same-device noise floor
    assert llm.engine.kv.num_free_blocks == 160


def test_cuda_bfloat16_runs_and_is_deterministic(model_path: Path, prompts: list[list[int]]) -> None:
    llm = LLM(
        model={"path": str(model_path), "device": "cuda"},
        kv_pool={"num_blocks": 160},
        prefix_cache={"enabled": False},  # the second run must compute exactly what the first did
        show_progress=False,
    )
    assert llm.engine.runner.model.dtype == torch.bfloat16
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
    first = drive(llm.engine, prompts, sampling=params)
    second = drive(llm.engine, prompts, sampling=params)
    assert all(len(t) == 16 for t in first.token_ids)
    assert first.token_ids == second.token_ids
