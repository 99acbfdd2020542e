"""KV hand-off between two engines in one process: export from one prefix cache, adopt into another.

No worker processes here: two engines around the already-loaded float32
model, the blocks carried by a real ``shm`` KV transfer channel. Checks the
bookkeeping the disaggregated mode relies on: the decode engine's
admission hits every shipped block, greedy tokens equal the colocated
engine's, and every reference taken for the hand-off is given back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch

from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError
from sagellm.core.types import SamplingParams
from sagellm.engines import LLM, LLMEngine
from sagellm.engines.disagg import disagg_config
from sagellm.engines.disagg.channel_api import open_channel
from sagellm.engines.disagg.handoff import adopt_blocks, allocate_blocks, export_prompt_blocks, release
from sagellm.kv_transfer import BlockGeometry

NEW = 6


def _drain(engine: LLMEngine) -> list:
    outputs = []
    while engine.has_unfinished():
        outputs += engine.step()
    return outputs


class Shipped(NamedTuple):
    first_token: int
    sent: list[int]  # the prefill engine's blocks, in prompt order
    received: list[int]  # the decode engine's blocks they landed in
    geometry: BlockGeometry


def _ship(prefill: LLMEngine, decode: LLMEngine, prompt: list[int], rid: str, namespace: str) -> Shipped:
    """Prefill ``prompt`` on one engine and ship its full blocks into the other over a real ``shm`` channel."""
    prefill.add_request(prompt, SamplingParams(max_tokens=1, temperature=0.0), request_id=rid)
    (first,) = _drain(prefill)
    config = load_config(kv_transfer={"implementation": "shm", "options": {"namespace": namespace, "staging_mb": 64}})
    with open_channel(config, prefill.kv.pool, "p") as src, open_channel(config, decode.kv.pool, "d") as dst:
        held = export_prompt_blocks(prefill, prompt)
        assert len(held.block_ids) == len(prompt) // prefill.kv.block_size
        handle = src.transfer(held.block_ids, "d", metadata={"request_id": rid})
        release(prefill, held)
        incoming = dst.receive(timeout=10)
        assert incoming is not None and incoming.metadata == {"request_id": rid}
        blocks = allocate_blocks(decode, incoming.num_blocks)
        incoming.accept(blocks)
        handle.wait(10)
        assert handle.done()
    return Shipped(first.new_token_ids[0], list(held.block_ids), blocks, src.geometry)


def _decode_on(decode: LLMEngine, prompt: list[int], rid: str, shipped: Shipped) -> list[int]:
    """Adopt the shipped blocks and decode the rest of the request; all its tokens, the first included."""
    adopted = adopt_blocks(decode, prompt, shipped.received)
    token = shipped.first_token
    decode.add_request([*prompt, token], SamplingParams(max_tokens=NEW - 1, temperature=0.0), request_id=rid)
    outputs = []
    while decode.has_unfinished():
        outputs += decode.step()
        release(decode, adopted)  # after admission: the request holds its own references now
    assert outputs[0].num_cached_tokens == len(shipped.received) * decode.kv.block_size  # every shipped block was hit
    return [token, *(t for o in outputs for t in o.new_token_ids)]


def _hand_over(prefill: LLMEngine, decode: LLMEngine, prompt: list[int], rid: str, namespace: str) -> list[int]:
    """Prefill ``prompt`` on one engine, ship its KV, decode the rest on the other; all tokens."""
    return _decode_on(decode, prompt, rid, _ship(prefill, decode, prompt, rid, namespace))


@pytest.mark.parametrize("index", [1, 4, 5])  # prompts of several blocks (and a partial last one)
def test_handed_over_kv_continues_exactly_as_the_colocated_engine(
    llm: LLM, make_engine: Callable[..., LLMEngine], prompts: list[list[int]], index: int
) -> None:
    prompt = prompts[index]
    assert len(prompt) > 16
    colocated = make_engine()
    colocated.add_request(prompt, SamplingParams(max_tokens=NEW, temperature=0.0))
    expected = [t for o in _drain(colocated) for t in o.new_token_ids]
    prefill, decode = make_engine(), make_engine()
    got = _hand_over(prefill, decode, prompt, f"r{index}", f"t-{uuid.uuid4().hex[:8]}")
    assert got == expected
    # Every reference taken for the hand-off is back: all blocks free or merely cached (evictable).
    for engine in (prefill, decode):
        assert engine.kv.num_free_blocks == engine.kv.pool.layout.num_blocks


def test_a_prompt_shorter_than_a_block_exports_nothing(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine()
    assert export_prompt_blocks(engine, list(range(100, 110))).block_ids == []


def test_export_finds_only_what_the_prefix_cache_still_holds(
    make_engine: Callable[..., LLMEngine], prompts: list[list[int]]
) -> None:
    engine = make_engine()
    prompt = prompts[4]
    assert export_prompt_blocks(engine, prompt).block_ids == []  # nothing computed yet
    engine.add_request(prompt, SamplingParams(max_tokens=1, temperature=0.0), request_id="ran")
    _drain(engine)
    held = export_prompt_blocks(engine, prompt)
    assert len(held.block_ids) == len(prompt) // engine.kv.block_size
    release(engine, held)
    release(engine, held)  # twice is harmless


def test_a_pin_takes_cached_blocks_out_of_the_evictable_count_until_unpinned(
    make_engine: Callable[..., LLMEngine], prompts: list[list[int]]
) -> None:
    engine = make_engine()
    prompt = prompts[4]
    engine.add_request(prompt, SamplingParams(max_tokens=1, temperature=0.0), request_id="ran")
    _drain(engine)
    free = engine.kv.num_free_blocks  # the finished prompt's blocks are cached and evictable
    held = export_prompt_blocks(engine, prompt)
    assert held.block_ids and engine.kv.num_free_blocks == free - len(held.block_ids)
    assert not engine.has_unfinished()  # a pin is no sequence: nothing to schedule
    release(engine, held)
    assert engine.kv.num_free_blocks == free


def test_disagg_config_defaults_to_the_shm_channel_and_needs_the_prefix_cache() -> None:
    config = disagg_config(load_config(), "ns-1")
    assert config.kv_transfer.implementation == "shm"
    assert config.kv_transfer.options["namespace"] == "ns-1"
    with pytest.raises(ConfigError):
        disagg_config(load_config(prefix_cache={"enabled": False}), "ns-2")


def test_int8_kv_travels_with_its_scales(make_engine: Callable[..., LLMEngine], prompts: list[list[int]]) -> None:
    """An int8 cache's codes and per-block scales arrive bit for bit, and decoding goes on from them."""
    prompt, rid = prompts[4], "q8"
    int8_pool = {"num_blocks": 160, "cache_dtype": "int8"}
    prefill, decode = make_engine(kv_pool=int8_pool), make_engine(kv_pool=int8_pool)
    shipped = _ship(prefill, decode, prompt, rid, f"t-{uuid.uuid4().hex[:8]}")
    assert shipped.geometry.dtype == "int8"
    sent, got = shipped.sent, shipped.received
    for layer in range(prefill.kv.pool.layout.num_layers):
        sent_scales, got_scales = prefill.kv.pool.kv_scales(layer), decode.kv.pool.kv_scales(layer)
        for kind in range(2):
            sent_codes, got_codes = prefill.kv.pool.kv_tensors(layer)[kind], decode.kv.pool.kv_tensors(layer)[kind]
            assert torch.equal(sent_codes[sent], got_codes[got])
            assert torch.equal(sent_scales[kind][sent], got_scales[kind][got])
            assert bool((got_scales[kind][got] > 0).all())
    assert len(_decode_on(decode, prompt, rid, shipped)) == NEW
