"""KV-cache dtype (``kv_pool.cache_dtype`` / ``--kv-cache-dtype``): int8 with per-block scales, bf16, fp16.

The int8 path must store exactly the pool's format (the engine's writes
equal ``PagedKVPool.write_kv`` bit for bit, its gathers equal ``read_kv``),
and must compute nearly the same model: against the float32 cache at
float32 compute, the logits stay within the tolerances below. Both
comparisons are teacher-forced along the float32 cache's greedy text (a
free-running comparison parts for good at the first near-tie the cache's
rounding flips, and then measures the CPU as much as the cache): once
served as a continuous batch (decodes read the cache back), once scored
in chunks of 16 through the paged prefill path.

Tolerances (8 test prompts x 16 greedy tokens; measured 2026-12-05 on a
2-core AMD EPYC, served / scored; the limits leave 2x headroom or more):

| cache | max abs logit error | top-1 agreement | mean KL (nats) |
|---|---:|---:|---:|
| int8 | 1.76 / 1.70 (limit 4.0) | 0.984 / 0.971 (limit 0.90) | 0.002 / 0.002 (limit 0.02) |
| bfloat16 | 0.18 / 0.20 (limit 0.5) | 1.0 / 1.0 (limit 0.98) | 2e-5 / 2e-5 (limit 1e-3) |
| float16 | 0.02 / 0.02 (limit 0.1) | 1.0 / 1.0 (limit 0.98) | < 1e-6 (limit 1e-3) |

Perplexity on tinyshakespeare is in ``benchmarks/bench_kv_cache_dtype.py``
(int8 costs well under 1 %).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from engines_helpers import drive
from margins import record_margin
from teacher_forcing import Agreement, agreement, teacher_forced_logits

from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError
from sagellm.core.types import KVLayout, Request, SamplingParams, SequenceState, Tier
from sagellm.engines import LLM, LLMEngine
from sagellm.engines.cli.main import EXIT_BAD_INPUT, main
from sagellm.engines.cli.options import add_engine_options, config_from_args
from sagellm.engines.model.attention import FusedAttention, decode_attention, gather_context
from sagellm.engines.model.attention_metadata import AttentionMetadata, PrefillChunk
from sagellm.engines.model.kv_int8 import KVScales, paired_view, write_quantized
from sagellm.engines.runtime.input_batch import ChunkWork
from sagellm.engines.runtime.model_runner import ModelRunner
from sagellm.kernel_fusion import CPUKernels
from sagellm.kv_pool import PagedKVPool

NEW_TOKENS = 16
SCORE_CHUNK = 16
# cache dtype -> (max abs logit error, min top-1 agreement, max mean KL) against the float32 cache
LOGIT_TOLERANCE = {"int8": (4.0, 0.90, 0.02), "bfloat16": (0.5, 0.98, 1e-3), "float16": (0.1, 0.98, 1e-3)}
SERVED_ARRIVALS = [0, 0, 1, 2, 3, 5, 8, 13]  # prompts join while others decode: prefills and decodes share steps


def engine_with(make_engine: Callable[..., LLMEngine], cache_dtype: str, **kv_pool: object) -> LLMEngine:
    return make_engine(kv_pool={"num_blocks": 160, "cache_dtype": cache_dtype, **kv_pool})


# ---------------------------------------------------------------------------- the format: pool and engine agree
LAYOUT = KVLayout(num_layers=2, num_kv_heads=2, head_dim=8, block_size=4, num_blocks=8, dtype="int8")


def metadata(slots: list[int], prefill: bool) -> AttentionMetadata:
    chunks = [PrefillChunk(0, len(slots), None, len(slots), None)] if prefill else []
    return AttentionMetadata(slot_mapping=torch.tensor(slots), decode=None, prefills=chunks)


@pytest.mark.parametrize(
    ("paired", "fused"),
    [(True, False), (False, False), (True, True), (False, True)],
    ids=["K+V-in-one-pass", "K-then-V", "K+V-fused-kernel", "K-then-V-fused-kernel"],
)
def test_int8_writes_equal_the_pools_own_writes_bit_for_bit(paired: bool, fused: bool) -> None:
    """A 6-token prefill, then decode tokens one by one, louder and louder (every block scale grows);
    with the fused kernel set's ``quantize_kv`` too."""
    kernels = FusedAttention.offered_by(CPUKernels()) if fused else None
    assert kernels is None or kernels.writer is not None
    ours, theirs = PagedKVPool(LAYOUT), PagedKVPool(LAYOUT)
    gen = torch.Generator().manual_seed(0)
    steps = [([13, 14, 15, 20, 21, 22], True)] + [([23 + i], False) for i in range(6)] + [([2, 5, 24, 25], True)]
    for i, (slots, prefill) in enumerate(steps):
        k = torch.randn(len(slots), 2, 8, generator=gen) * (1 + i)
        v = torch.randn(len(slots), 2, 8, generator=gen) * (1 + i) / 3
        key_blocks, value_blocks = ours.kv_tensors(1)
        key_scales, value_scales = ours.kv_scales(1)  # type: ignore[misc]
        scales = KVScales.of(key_blocks, value_blocks, key_scales, value_scales)
        assert (scales.codes is not None) and (scales.scales is not None)  # the paged pool keeps K and V adjacent
        if not paired:
            scales = KVScales(key_scales, value_scales)
        write_quantized(k, v, key_blocks, value_blocks, scales, metadata(slots, prefill), kernels)
        theirs.write_kv(1, torch.tensor(slots), k, v)
    for a, b in zip(ours.kv_tensors(1) + ours.kv_scales(1), theirs.kv_tensors(1) + theirs.kv_scales(1)):  # type: ignore[operator]
        assert torch.equal(a, b)
    assert ours.kv_scales(1)[0].nonzero().flatten().tolist() == [0, 1, 3, 5, 6, 7]  # type: ignore[index]
    assert torch.equal(ours.kv_tensors(0)[0], torch.zeros_like(ours.kv_tensors(0)[0]))  # other layers untouched


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_gather_dequantizes_like_the_pools_read(dtype: torch.dtype) -> None:
    pool = PagedKVPool(LAYOUT)
    blocks = pool.allocate(3)
    slots = torch.tensor([b * 4 + o for b in blocks for o in range(4)])
    values = torch.randn(12, 2, 8)
    pool.write_kv(0, slots, values, -values)
    key_scales, value_scales = pool.kv_scales(0)  # type: ignore[misc]
    table = torch.tensor([blocks])
    keys = gather_context(pool.kv_tensors(0)[0], table, dtype, key_scales)
    expected_keys, expected_values = pool.read_kv(0, blocks, Tier.DEVICE, dtype)
    assert keys.dtype == dtype and torch.equal(keys[0], expected_keys.reshape(12, 2, 8))
    values_back = gather_context(pool.kv_tensors(0)[1], table, dtype, value_scales)
    assert torch.equal(values_back[0], expected_values.reshape(12, 2, 8))
    # within the pool's bound: half a step of each block's scale (plus the rounding to dtype)
    bound = key_scales[blocks].repeat_interleave(4).view(12, 1, 1) / 2 * 1.0001 + values.abs() * torch.finfo(dtype).eps
    assert bool(((keys[0].float() - values).abs() <= bound).all())


def test_paired_view_only_where_one_view_is_both() -> None:
    storage = torch.arange(2 * 3 * 4).view(2, 3, 4)
    pair = paired_view(storage[0], storage[1])
    assert pair is not None and torch.equal(pair, storage)
    assert paired_view(storage[1], storage[0]) is None  # V before K
    assert paired_view(storage[0], storage[0]) is None  # overlapping
    assert paired_view(storage[0], torch.arange(12).view(3, 4)) is None  # another allocation
    assert paired_view(storage[0, :2], storage[1, 1:]) is not None  # any fixed offset past K's extent
    assert paired_view(storage[0, :, :2], storage[1, :, 1:3]) is not None


@pytest.mark.parametrize(("paired", "fused"), [(True, False), (False, False), (True, True)])
def test_half_precision_decode_folds_the_scales_like_dequantizing_first(paired: bool, fused: bool) -> None:
    """bf16 decode multiplies scores/probabilities by the block scales instead of dequantizing K and V
    (the PyTorch block-diagonal path, and the fused C++ kernel reading the codes in place)."""
    pool = PagedKVPool(LAYOUT)
    blocks = pool.allocate(5)
    slots = torch.tensor([b * 4 + o for b in blocks for o in range(4)])
    pool.write_kv(0, slots, torch.randn(20, 2, 8) * 3, torch.randn(20, 2, 8))
    key_blocks, value_blocks = pool.kv_tensors(0)
    key_scales, value_scales = pool.kv_scales(0)  # type: ignore[misc]
    scales = KVScales.of(key_blocks, value_blocks, key_scales, value_scales)
    scales = scales if paired else KVScales(key_scales, value_scales)
    table = torch.tensor([blocks[:3] + [0, 0], blocks])  # two sequences: 10 and 20 tokens of context
    mask = torch.zeros(2, 1, 1, 20).index_fill_(3, torch.arange(10, 20), float("-inf"))
    mask[1] = 0.0
    lens = torch.tensor([10, 20])
    group = SimpleNamespace(token_idx=torch.arange(2), block_table=table, mask_bias=mask, context_lens=lens)
    query = torch.randn(2, 4, 8)  # 4 query heads over 2 KV heads
    kernels = FusedAttention.offered_by(CPUKernels()) if fused else None
    assert kernels is None or kernels.serves(query.bfloat16(), key_blocks, group)  # type: ignore[arg-type]
    folded = decode_attention(query.bfloat16(), key_blocks, value_blocks, group, scales, kernels)  # type: ignore[arg-type]
    deq_keys, deq_values = pool.read_kv(0, list(range(LAYOUT.num_blocks)), Tier.DEVICE, torch.float32)
    exact = decode_attention(query, deq_keys, deq_values, group)  # type: ignore[arg-type]
    assert folded.dtype == torch.bfloat16
    torch.testing.assert_close(folded.float(), exact, atol=0.03, rtol=0.03)


def test_runner_hands_float_caches_no_scales_and_int8_caches_the_pools(
    make_engine: Callable[..., LLMEngine],
) -> None:
    float_engine = engine_with(make_engine, "float32")
    assert all(cache.scales is None for cache in float_engine.runner.kv_caches)
    int8_engine = engine_with(make_engine, "int8")
    pool = int8_engine.kv.pool
    assert pool.kv_tensors(0)[0].dtype == torch.int8
    for layer, cache in enumerate(int8_engine.runner.kv_caches):
        assert cache.scales is not None and cache.scales.codes is not None  # K and V in one pass
        key_scales, value_scales = pool.kv_scales(layer)
        assert cache.scales.key.data_ptr() == key_scales.data_ptr()  # views, no copy
        assert cache.scales.value.data_ptr() == value_scales.data_ptr()
        assert cache.scales.codes[1].data_ptr() == pool.kv_tensors(layer)[1].data_ptr()


def test_an_int8_layout_needs_a_pool_with_scales(llm: LLM) -> None:
    layout = KVLayout(num_layers=30, num_kv_heads=3, head_dim=64, block_size=16, num_blocks=4, dtype="int8")
    codes = torch.zeros(4, 16, 3, 64, dtype=torch.int8)
    scaleless = SimpleNamespace(layout=layout, kv_tensors=lambda layer: (codes, codes))
    with pytest.raises(ConfigError, match="QuantizedKVPool"):
        ModelRunner(llm.engine.runner.model, scaleless, torch.device("cpu"))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- sizes
def test_int8_pool_holds_about_twice_the_tokens_of_bf16(make_engine: Callable[..., LLMEngine]) -> None:
    budget = {"num_blocks": None, "memory_gb": 0.02}
    int8 = engine_with(make_engine, "int8", **budget).kv.pool
    bf16 = engine_with(make_engine, "bfloat16", **budget).kv.pool
    assert int8.nbytes == int8.layout.num_blocks * int8.layout.bytes_per_block  # scales counted by core's layout
    assert int8.nbytes <= 0.02 * 1024**3 and bf16.nbytes <= 0.02 * 1024**3
    assert 1.95 < int8.layout.num_blocks / bf16.layout.num_blocks <= 2.0


# ---------------------------------------------------------------------------- quality
@pytest.fixture(scope="module")
def float32_greedy(make_engine: Callable[..., LLMEngine], prompts: list[list[int]]) -> list[list[int]]:
    sampling = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    return drive(engine_with(make_engine, "float32"), prompts, sampling=sampling).token_ids


def test_int8_cache_answers_and_returns_every_block(
    make_engine: Callable[..., LLMEngine], prompts: list[list[int]]
) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    engine = engine_with(make_engine, "int8")
    run = drive(engine, prompts, SERVED_ARRIVALS, sampling=sampling)
    assert "Paris" in run.texts[0]  # "What is the capital of France?"
    assert engine.kv.num_free_blocks == engine.kv.pool.layout.num_blocks  # nothing leaked


@pytest.fixture(scope="module")
def float32_served(
    make_engine: Callable[..., LLMEngine], prompts: list[list[int]], float32_greedy: list[list[int]]
) -> list[torch.Tensor]:
    """The float32 cache's logits rows, served as a continuous batch, teacher-forced along its own greedy text."""
    return teacher_forced_logits(engine_with(make_engine, "float32"), prompts, float32_greedy, SERVED_ARRIVALS).logits


@pytest.mark.parametrize("cache_dtype", list(LOGIT_TOLERANCE))
def test_served_logits_follow_the_float32_caches(
    make_engine: Callable[..., LLMEngine],
    prompts: list[list[int]],
    float32_greedy: list[list[int]],
    float32_served: list[torch.Tensor],
    cache_dtype: str,
) -> None:
    """Through the serving path (decodes reading the cache back, batched with prefills), teacher-forced:
    a near-tie flipped by the cache's rounding costs one row, not the rest of the text."""
    engine = engine_with(make_engine, cache_dtype)
    served = teacher_forced_logits(engine, prompts, float32_greedy, SERVED_ARRIVALS)
    check_close(agreement(served.logits, float32_served), cache_dtype)
    assert engine.kv.num_free_blocks == engine.kv.pool.layout.num_blocks  # nothing leaked


def check_close(found: Agreement, cache_dtype: str) -> None:
    max_err, min_top1, max_kl = LOGIT_TOLERANCE[cache_dtype]
    record_margin(f"{cache_dtype} cache max |logit error|", found.max_abs, max_err)
    record_margin(f"{cache_dtype} cache top-1 agreement", found.top1, min_top1, higher_is_better=True)
    record_margin(f"{cache_dtype} cache mean KL", found.mean_kl, max_kl)
    assert found.max_abs < max_err, f"max abs logit error {found.max_abs:.3f}"
    assert found.top1 >= min_top1, f"top-1 agreement {found.top1:.3f}"
    assert found.mean_kl < max_kl, f"mean KL {found.mean_kl:.5f}"
    assert found.max_abs > 0, "a lower-precision cache that changes nothing was not used"


def score(engine: LLMEngine, sequences: list[list[int]]) -> list[torch.Tensor]:
    """[len, vocab] logits of every token of each sequence, fed together in chunks of ``SCORE_CHUNK``
    tokens, so every chunk after the first reads the earlier ones back from the cache."""
    pool = engine.kv.pool
    seqs = [SequenceState(Request(f"score-{i}", tuple(ids))) for i, ids in enumerate(sequences)]
    for seq in seqs:
        seq.block_ids = pool.allocate(-(-seq.num_tokens // pool.layout.block_size))
    logits: list[list[torch.Tensor]] = [[] for _ in seqs]
    try:
        with torch.inference_mode():
            for start in range(0, max(s.num_tokens for s in seqs), SCORE_CHUNK):
                works = [
                    ChunkWork(s, start, min(SCORE_CHUNK, s.num_tokens - start)) for s in seqs if start < s.num_tokens
                ]
                rows = engine.runner.logits_of_every_token(works).split([w.num_tokens for w in works])
                for work, part in zip(works, rows):
                    logits[seqs.index(work.seq)].append(part)
    finally:
        for seq in seqs:
            pool.free(seq.block_ids)
    return [torch.cat(parts) for parts in logits]


@pytest.fixture(scope="module")
def teacher_forced(prompts: list[list[int]], float32_greedy: list[list[int]]) -> list[tuple[list[int], slice]]:
    """Each prompt + the float32 cache's greedy continuation, and the rows that predict the continuation."""
    return [(p + c, slice(len(p) - 1, len(p) + len(c))) for p, c in zip(prompts, float32_greedy)]


@pytest.fixture(scope="module")
def float32_scores(
    make_engine: Callable[..., LLMEngine], teacher_forced: list[tuple[list[int], slice]]
) -> list[torch.Tensor]:
    scores = score(engine_with(make_engine, "float32"), [tokens for tokens, _ in teacher_forced])
    return [logits[rows] for logits, (_, rows) in zip(scores, teacher_forced)]


@pytest.mark.parametrize("cache_dtype", list(LOGIT_TOLERANCE))
def test_logits_stay_close_to_the_float32_caches(
    make_engine: Callable[..., LLMEngine],
    teacher_forced: list[tuple[list[int], slice]],
    float32_scores: list[torch.Tensor],
    cache_dtype: str,
) -> None:
    scores = score(engine_with(make_engine, cache_dtype), [tokens for tokens, _ in teacher_forced])
    got = [logits[generated] for logits, (_, generated) in zip(scores, teacher_forced)]
    check_close(agreement(got, float32_scores), cache_dtype)


def test_prefix_hits_and_chunked_prefill_read_int8_blocks(
    make_engine: Callable[..., LLMEngine],
    prompts: list[list[int]],
    float32_greedy: list[list[int]],
    float32_served: list[torch.Tensor],
) -> None:
    """Prompts 1 and 2 share a long system prompt: the second reuses the first's int8 blocks.

    Teacher-forced along the float32 cache's text and compared row by row
    with the float32 cache's served rows.
    """
    engine = make_engine(
        kv_pool={"num_blocks": 160, "cache_dtype": "int8"}, scheduler_ir={"max_num_batched_tokens": 32}
    )
    pair = [1, 2]
    served = teacher_forced_logits(engine, [prompts[i] for i in pair], [float32_greedy[i] for i in pair], [0, 6])
    assert served.run.num_cached_tokens[1] >= 64
    assert served.run.probe.split_prompt_chunks > 0
    check_close(agreement(served.logits, [float32_served[i] for i in pair]), "int8")


# ---------------------------------------------------------------------------- configuration and CLI
def test_flag_reaches_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_engine_options(parser)
    assert config_from_args(parser.parse_args(["--kv-cache-dtype", "int8"])).kv_pool.cache_dtype == "int8"
    assert config_from_args(parser.parse_args([])).kv_pool.cache_dtype == "auto"


def test_bad_cache_dtype_exits_2_or_raises_config_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--kv-cache-dtype", "int4", "hi"])
    assert exc.value.code == 2
    assert "int4" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="kv_pool.cache_dtype"):
        load_config(kv_pool={"cache_dtype": "fp8"})
    monkeypatch.setenv("SAGELLM__KV_POOL__CACHE_DTYPE", "int4")
    assert main(["generate", "--max-tokens", "2", "hi"]) == EXIT_BAD_INPUT
    assert "cache_dtype" in capsys.readouterr().err


def test_cli_generates_with_an_int8_cache(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "--kv-cache-dtype", "int8", "--num-blocks", "64", "--temperature", "0", "--max-tokens", "6"]
    assert main([*argv, "--dtype", "float32", "The capital of France is"]) == 0
    assert "Paris" in capsys.readouterr().out
