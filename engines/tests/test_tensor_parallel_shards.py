"""Tensor-parallel shards computed in threads of one process: the split's arithmetic, apart from any transport.

Rank 0 runs a real engine over its shard; its model mirrors each forward to
rank 1's thread, exactly as the worker processes receive them. In float32
the joined shards must give the unsharded model's logits up to summation
order, and the same greedy tokens.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest
import torch
from engines_helpers import drive
from thread_comm import ThreadComm, ThreadGroup
from tiny_gguf import write_tiny_llama

from sagellm.core.config import SageLLMConfig, load_config
from sagellm.core.errors import ConfigError
from sagellm.engines.engine.builder import assemble_engine, build_tokenizer, kv_layout, model_of
from sagellm.engines.engine.tensor_parallel import shard_model
from sagellm.engines.engine.tensor_parallel_start import rank0_config
from sagellm.engines.engine.tensor_parallel_worker import rank_runner
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.forward_args import ForwardArgs
from sagellm.engines.model.loader import load_checkpoint
from sagellm.engines.model.tensor_parallel import TensorShard, even_span

SMOLLM2 = ModelConfig("llama", 49152, 576, 1536, 30, 9, 3, 64, 8192)
PROMPTS = ["The lighthouse keeper climbed the steps", "def fibonacci(n):", "Tell me about the sea.", "1, 2, 3,"]


def test_smollm2_splits_whole_kv_heads_and_whole_groups() -> None:
    ranks = [TensorShard.plan(SMOLLM2, r, 2) for r in range(2)]
    assert [s.kv_heads for s in ranks] == [(0, 2), (2, 3)]
    assert [s.q_heads for s in ranks] == [(0, 6), (6, 9)]
    assert [s.intermediate for s in ranks] == [(0, 768), (768, 1536)]
    assert [s.vocab for s in ranks] == [(0, 24576), (24576, 49152)]
    three = [TensorShard.plan(SMOLLM2, r, 3) for r in range(3)]
    assert [s.kv_heads for s in three] == [(0, 1), (1, 2), (2, 3)]
    assert three[0].local_config(SMOLLM2).q_size == 3 * 64
    with pytest.raises(ConfigError, match="exceeds the model's 3 KV heads"):
        TensorShard.plan(SMOLLM2, 0, 4)


@pytest.mark.parametrize(("items", "parts"), [(3, 2), (48, 2), (48, 5), (7, 7)])
def test_even_spans_tile_the_items(items: int, parts: int) -> None:
    spans = [even_span(items, parts, i) for i in range(parts)]
    assert spans[0][0] == 0 and spans[-1][1] == items
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert max(e - b for b, e in spans) - min(e - b for b, e in spans) <= 1


def test_uneven_vocabulary_pads_the_last_rank() -> None:
    odd = ModelConfig("llama", 1001, 64, 128, 1, 4, 2, 16, 64)
    shards = [TensorShard.plan(odd, r, 2) for r in range(2)]
    assert [s.vocab for s in shards] == [(0, 501), (501, 1001)]
    table = torch.arange(1001.0).unsqueeze(1).repeat(1, 64)
    cut = shards[1]._vocab_rows(table)
    assert cut.shape == (501, 64) and float(cut[-1].abs().sum()) == 0.0 and float(cut[0, 0]) == 501.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tp") / "tiny.gguf", num_layers=3, seed=11)


def config_for(path: Path, world_size: int) -> SageLLMConfig:
    return load_config(
        model={"path": str(path), "dtype": "float32"},
        kv_pool={"num_blocks": 64},
        collective_ops={"world_size": world_size},
    )


def test_two_thread_shards_match_the_whole_model_in_float32(tiny: Path) -> None:
    whole_config = config_for(tiny, 1)
    checkpoint = load_checkpoint(tiny, torch.float32, show_progress=False)
    tokenizer = build_tokenizer(checkpoint)
    prompts = [tokenizer.encode(p) for p in PROMPTS]
    whole = assemble_engine(whole_config, model_of(whole_config, checkpoint, torch.device("cpu")), tokenizer)
    expected = drive(whole, prompts)

    config = config_for(tiny, 2)
    group = ThreadGroup(2)
    models = [
        shard_model(config, load_checkpoint(tiny, torch.float32, show_progress=False), r, ThreadComm(group, r))
        for r in range(2)
    ]
    layout = kv_layout(config, rank0_config(config, checkpoint.config), torch.device("cpu"), torch.float32, 512)
    follower = rank_runner(config, models[1], layout)
    inbox: queue.Queue[ForwardArgs | None] = queue.Queue()
    models[0].mirror = inbox.put

    def rank1() -> None:
        while (args := inbox.get()) is not None:
            follower.model(args.input_ids, args.positions, args.meta, follower.kv_caches, args.logits_idx, args.layers)

    thread = threading.Thread(target=rank1, daemon=True)
    thread.start()
    try:
        sharded = drive(assemble_engine(config, models[0], tokenizer), prompts)
    finally:
        inbox.put(None)
        thread.join(timeout=30)
    assert models[0].config.num_kv_heads + models[1].config.num_kv_heads == checkpoint.config.num_kv_heads
    assert sharded.token_ids == expected.token_ids
