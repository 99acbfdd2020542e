"""Storage: one contiguous tensor, views that alias it, dtypes, devices, copy-on-write."""

from __future__ import annotations

import pytest
import torch
from kv_pool_helpers import small_layout, small_pool

from sagellm.core.errors import ConfigError
from sagellm.kv_pool import PagedKVPool


@pytest.mark.parametrize(
    ("dtype", "torch_dtype"),
    [("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)],
)
def test_dtype_variants_allocate_zeroed_storage(dtype: str, torch_dtype: torch.dtype) -> None:
    pool = small_pool(dtype=dtype)
    key, value = pool.kv_tensors(1)
    assert key.dtype == value.dtype == torch_dtype
    assert not key.any() and not value.any()
    assert pool.nbytes == pool.layout.bytes_per_block * pool.layout.num_blocks


def test_unknown_dtype_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="float64"):
        PagedKVPool(small_layout(dtype="float64"))


def test_bad_layout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="num_blocks"):
        PagedKVPool(small_layout(num_blocks=0))


def test_all_layers_share_one_allocation() -> None:
    pool = small_pool()
    base = pool.kv_tensors(0)[0].untyped_storage().data_ptr()
    for layer in range(pool.layout.num_layers):
        for tensor in (*pool.kv_tensors(layer), *pool.flat_kv_tensors(layer)):
            assert tensor.untyped_storage().data_ptr() == base
            assert tensor.is_contiguous()


def test_flat_views_alias_block_views() -> None:
    pool = small_pool(block_size=4)
    layout = pool.layout
    flat_k, flat_v = pool.flat_kv_tensors(1)
    assert tuple(flat_k.shape) == (layout.num_blocks * layout.block_size, layout.num_kv_heads, layout.head_dim)
    block_id, offset = 3, 2
    slot = block_id * layout.block_size + offset
    flat_k[slot] = 5.0
    flat_v[slot, 1, 7] = -1.5
    key, value = pool.kv_tensors(1)
    assert bool((key[block_id, offset] == 5.0).all())
    assert float(value[block_id, offset, 1, 7]) == -1.5
    assert float(pool.kv_tensors(0)[0].abs().sum()) == 0.0  # other layer untouched


def test_layer_out_of_range_raises() -> None:
    pool = small_pool()
    with pytest.raises(IndexError):
        pool.kv_tensors(2)
    with pytest.raises(IndexError):
        pool.flat_kv_tensors(-1)


def test_copy_on_write_copies_every_layer_k_and_v() -> None:
    pool = small_pool()
    block, neighbour = pool.allocate(2)
    for layer in range(pool.layout.num_layers):
        key, value = pool.kv_tensors(layer)
        key[block].normal_()
        value[block].normal_()
        key[neighbour].fill_(9.0)
    pool.retain([block])
    copy = pool.copy_on_write(block)
    assert copy not in (block, neighbour)
    for layer in range(pool.layout.num_layers):
        key, value = pool.kv_tensors(layer)
        assert torch.equal(key[copy], key[block]) and torch.equal(value[copy], value[block])
        assert bool(key[block].any())
    assert pool.ref_count(block) == 1 and pool.ref_count(copy) == 1
    assert pool.stats().num_shared_blocks == 0


def test_copy_on_write_writes_do_not_reach_the_original() -> None:
    pool = small_pool()
    (block,) = pool.allocate(1)
    pool.retain([block])
    copy = pool.copy_on_write(block)
    pool.kv_tensors(0)[0][copy].fill_(1.0)
    assert not pool.kv_tensors(0)[0][block].any()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pool() -> None:
    pool = PagedKVPool(small_layout(dtype="bfloat16", device="cuda"))
    key, _ = pool.kv_tensors(0)
    assert key.is_cuda and key.dtype == torch.bfloat16
    (block,) = pool.allocate(1)
    key[block].fill_(2.0)
    pool.retain([block])
    copy = pool.copy_on_write(block)
    assert torch.equal(pool.kv_tensors(0)[0][copy], key[block])
    flat_k, _ = pool.flat_kv_tensors(0)
    assert flat_k.data_ptr() == key.data_ptr()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cuda"):
        PagedKVPool(small_layout(device="cuda"))
