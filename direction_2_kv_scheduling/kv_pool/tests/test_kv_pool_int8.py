"""int8 KV: codes + a scale per block, layer and K/V; write quantizes, read dequantizes; migrations keep both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kv_pool_helpers import small_layout, tiered_pool

from sagellm.core.types import Tier
from sagellm.kv_pool import PagedKVPool, PoolOptions, bytes_per_block

BLOCK = 4  # block_size of the helper pools


def slots_of(blocks: list[int], num_tokens: int) -> torch.Tensor:
    return torch.tensor([blocks[p // BLOCK] * BLOCK + p % BLOCK for p in range(num_tokens)])


def random_kv(num_tokens: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(num_tokens, 2, 8, generator=generator) * scale,
        torch.randn(num_tokens, 2, 8, generator=generator) * scale,
    )


def test_int8_storage_keeps_codes_and_per_block_scales() -> None:
    pool = PagedKVPool(small_layout(dtype="int8"))
    key, value = pool.kv_tensors(0)
    assert key.dtype == value.dtype == torch.int8
    scales = pool.kv_scales(1)
    assert scales is not None and scales[0].shape == (8,) and scales[0].dtype == torch.float32
    assert pool.compute_dtype == torch.float32
    codes, scale_bytes = 2 * 2 * 4 * 2 * 8, 2 * 2 * 4  # K+V x layers x block x heads x dim; float32 per layer, K/V
    assert pool.nbytes == 8 * bytes_per_block(2, 2, 8, 4, "int8") == 8 * (codes + scale_bytes)
    assert pool.layout.bytes_per_block == codes + scale_bytes  # core's KVLayout counts the scales too
    assert PagedKVPool(small_layout()).kv_scales(0) is None


def test_one_write_round_trips_within_half_a_step() -> None:
    pool = PagedKVPool(small_layout(dtype="int8"), PoolOptions(compute_dtype="bfloat16"))
    blocks = pool.allocate(3)
    key, value = random_kv(11, seed=1, scale=3.0)
    pool.write_kv(1, slots_of(blocks, 11), key, value)
    got_key, got_value = pool.read_kv(1, blocks)
    assert got_key.dtype == torch.bfloat16 and got_key.shape == (3, BLOCK, 2, 8)
    key_scales, value_scales = pool.kv_scales(1)  # type: ignore[misc]
    for got, want, scales in ((got_key, key, key_scales), (got_value, value, value_scales)):
        per_token_bound = scales[blocks].repeat_interleave(BLOCK)[:11] / 2
        error = (got.float().reshape(-1, 2, 8)[:11] - want).abs().amax(dim=(1, 2))
        # bf16 output adds its own rounding (8 bits of mantissa) on top of the int8 step
        assert bool((error <= per_token_bound + want.abs().amax() * 2**-8).all())
        assert torch.allclose(scales[blocks], torch.stack([want[i : i + BLOCK].abs().amax() / 127 for i in (0, 4, 8)]))
    relative = ((got_key.float().reshape(-1, 2, 8)[:11] - key).norm() / key.norm()).item()
    assert relative < 0.01


def test_appending_louder_tokens_grows_the_scale_and_keeps_old_tokens_within_a_step() -> None:
    pool = PagedKVPool(small_layout(dtype="int8"))
    (block,) = pool.allocate(1)
    tokens = [random_kv(1, seed=s, scale=1.0 + 3 * s)[0] for s in range(BLOCK)]  # each louder than the last
    for offset, key in enumerate(tokens):
        pool.write_kv(0, torch.tensor([block * BLOCK + offset]), key, key)
    got, _ = pool.read_kv(0, [block])
    want = torch.cat(tokens)
    scale = pool.kv_scales(0)[0][block].item()  # type: ignore[index]
    assert scale == pytest.approx(want.abs().amax().item() / 127)
    assert (got[0] - want).abs().amax().item() <= scale + 1e-6


def test_zero_values_and_reused_blocks_start_from_a_clean_scale() -> None:
    pool = PagedKVPool(small_layout(dtype="int8"))
    (block,) = pool.allocate(1)
    loud, _ = random_kv(BLOCK, seed=2, scale=100.0)
    pool.write_kv(0, slots_of([block], BLOCK), loud, loud)
    pool.free([block])
    assert pool.allocate(1) == [block]
    assert pool.kv_scales(0)[0][block].item() == 0.0  # type: ignore[index]
    zeros = torch.zeros(BLOCK, 2, 8)
    pool.write_kv(0, slots_of([block], BLOCK), zeros, zeros)
    got, _ = pool.read_kv(0, [block])
    assert not got.any() and pool.kv_scales(0)[0][block].item() == 0.0  # type: ignore[index]
    quiet, _ = random_kv(BLOCK, seed=3, scale=0.01)
    pool.write_kv(0, slots_of([block], BLOCK), quiet, quiet)
    got, _ = pool.read_kv(0, [block])
    assert (got[0] - quiet).abs().amax().item() <= quiet.abs().amax().item() / 254 + 1e-9


def test_copy_on_write_copies_codes_and_scales() -> None:
    pool = PagedKVPool(small_layout(dtype="int8"))
    (block,) = pool.allocate(1)
    key, value = random_kv(BLOCK, seed=4)
    pool.write_kv(1, slots_of([block], BLOCK), key, value)
    pool.retain([block])
    copy = pool.copy_on_write(block)
    assert torch.equal(pool.block_data(copy), pool.block_data(block))
    assert torch.equal(pool.block_scales(copy), pool.block_scales(block))  # type: ignore[arg-type]


def test_int8_blocks_survive_a_trip_through_every_tier_within_tolerance(tmp_path: Path) -> None:
    with tiered_pool(dtype="int8", disk_dir=str(tmp_path)) as pool:
        blocks = pool.allocate(2)
        key, value = random_kv(2 * BLOCK, seed=5, scale=2.0)
        for layer in range(2):
            pool.write_kv(layer, slots_of(blocks, 2 * BLOCK), key * (layer + 1), value)
        before = [pool.read_kv(layer, blocks) for layer in range(2)]
        ids, tier = blocks, Tier.DEVICE
        for nxt in (Tier.HOST, Tier.DISK, Tier.DEVICE):
            handle = pool.move_blocks(ids, tier, nxt)
            handle.wait()
            ids, tier = handle.dst_block_ids, nxt
            for layer in range(2):
                got_key, got_value = pool.read_kv(layer, ids, tier)
                assert torch.equal(got_key, before[layer][0]) and torch.equal(got_value, before[layer][1])
        for layer in range(2):
            got_key, _ = pool.read_kv(layer, ids)
            want = (key * (layer + 1)).reshape(2, BLOCK, 2, 8)
            bound = pool.kv_scales(layer)[0][ids].view(-1, 1, 1, 1) / 2  # type: ignore[index]
            assert bool(((got_key - want).abs() <= bound + 1e-6).all())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_float_pools_write_and_read_like_the_engine(dtype: str) -> None:
    pool = PagedKVPool(small_layout(dtype=dtype))
    blocks = pool.allocate(2)
    key, value = random_kv(6, seed=6)
    slots = slots_of(blocks, 6)
    pool.write_kv(0, slots, key, value)
    flat_key, flat_value = pool.flat_kv_tensors(0)
    assert torch.equal(flat_key[slots], key.to(flat_key.dtype))
    assert torch.equal(flat_value[slots], value.to(flat_key.dtype))
    got_key, _ = pool.read_kv(0, blocks, dtype=torch.float32)
    assert torch.equal(got_key.reshape(-1, 2, 8)[:6], key.to(flat_key.dtype).float())
    assert pool.read_kv(0, blocks)[0].dtype == flat_key.dtype
