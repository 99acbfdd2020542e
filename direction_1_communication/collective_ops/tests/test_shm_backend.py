"""The shm backend beyond the suite: bit-identity with gloo, peers that crash or never come, cleanup, kernels."""

from __future__ import annotations

import os
import time

import comm_helpers as h
import pytest
import torch

from sagellm.collective_ops import CollectiveError, GlooBackend, RendezvousError, ShmBackend
from sagellm.collective_ops.native import load_shm_kernel
from sagellm.collective_ops.shm_segment import SHM_DIR
from sagellm.core.errors import ConfigError, NotSupportedError
from sagellm.core.native import AVX512, cpu_flags

SIZES = (1, 37, 4099, 300_001)  # tails, the one-sync path, and (with 64 KiB slots) the sliced multi-chunk path


def _compare_with_gloo(rank: int, world_size: int, gloo_init: str, shm_init: str) -> str:
    gloo = GlooBackend(rank, world_size, gloo_init, timeout_s=h.TIMEOUT_S)
    shm = ShmBackend(rank, world_size, shm_init, timeout_s=h.TIMEOUT_S, slot_bytes=64 << 10, small_bytes=16 << 10)
    generator = torch.Generator().manual_seed(1234 + rank)
    bad = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for op in ("sum", "max", "min"):
            for n in SIZES:
                data = (torch.randn(n, generator=generator) * 1000).to(dtype)
                want, got = gloo.all_reduce(data.clone(), op), shm.all_reduce(data.clone(), op)
                if not torch.equal(want.view(-1).view(torch.uint8), got.view(-1).view(torch.uint8)):
                    diff = int((want != got).sum())
                    bad.append(f"{dtype} {op} n={n}: {diff} elements differ")
    gloo.close()
    shm.close()
    return "ok" if not bad else f"rank {rank}: " + "; ".join(bad)


def test_shm_all_reduce_is_bit_identical_to_gloo() -> None:
    reports = h.spawn(_compare_with_gloo, 2, h.free_init_method(), h.free_init_method())
    assert reports == ["ok", "ok"], "\n".join(reports)


# rows x cols per rank: tails, chunks that split rows, outputs past the pool's 1 MiB and the 16 MiB streaming size
GATHER_SHAPES = ((1, 1), (3, 37), (257, 1031), (1, 4 * 1024 * 1024 + 3))


def _gather_and_scatter_like_gloo(rank: int, world_size: int, gloo_init: str, shm_init: str, isa: str | None) -> str:
    """Against gloo where its sums are a + b (two ranks), and always against the rank-order fp32 reference."""
    gloo = GlooBackend(rank, world_size, gloo_init, timeout_s=h.TIMEOUT_S)
    shm = ShmBackend(
        rank, world_size, shm_init, timeout_s=h.TIMEOUT_S, slot_bytes=64 << 10, small_bytes=16 << 10, isa=isa
    )
    generator = torch.Generator().manual_seed(99)  # the same on every rank: each can build everyone's input
    bad = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for rows, cols in GATHER_SHAPES if world_size == 2 else GATHER_SHAPES[:-1]:  # 3 x 48 MiB is slow
            inputs = [
                (torch.randn(rows * world_size, cols, generator=generator) * 1000).to(dtype) for _ in range(world_size)
            ]
            data, part = inputs[rank], inputs[rank][:rows]
            gathered = shm.all_gather(part)
            if not torch.equal(gathered, torch.cat([x[:rows] for x in inputs])):
                bad.append(f"all_gather {dtype} {rows}x{cols}")
            for op in ("sum", "max") if cols < 1000 else ("sum",):
                got = shm.reduce_scatter(data, op)
                want = _reference([x[rank * rows : (rank + 1) * rows] for x in inputs], op)
                if got.shape != want.shape or not torch.equal(got.view(torch.uint8), want.view(torch.uint8)):
                    bad.append(f"reduce_scatter {dtype} {op} {rows * world_size}x{cols} vs reference")
                if world_size == 2 and not torch.equal(
                    got.view(torch.uint8), gloo.reduce_scatter(data, op).view(torch.uint8)
                ):
                    bad.append(f"reduce_scatter {dtype} {op} {rows * world_size}x{cols} vs gloo")
    gloo.close()
    shm.close()
    return "ok" if not bad else f"rank {rank}: " + "; ".join(bad)


@pytest.mark.parametrize(("world_size", "isa"), [(2, None), (3, None), (2, "portable")])
def test_shm_all_gather_and_reduce_scatter_are_bit_identical_to_gloo(world_size: int, isa: str | None) -> None:
    reports = h.spawn(_gather_and_scatter_like_gloo, world_size, h.free_init_method(), h.free_init_method(), isa)
    assert reports == ["ok"] * world_size, "\n".join(reports)


def _pooled_outputs(rank: int, world_size: int, init: str) -> str:
    shm = ShmBackend(rank, world_size, init, timeout_s=h.TIMEOUT_S)
    try:
        first = shm.all_gather(torch.full((1 << 18,), float(rank)))  # 2 MiB out: from the pool
        kept = first.clone()
        second = shm.all_gather(torch.full((1 << 18,), float(rank + 10)))
        assert second.data_ptr() != first.data_ptr(), "a result still held was handed out again"
        assert torch.equal(first, kept), "a held result changed under its holder"
        view = second[:4]
        del first, second
        third = shm.all_gather(torch.full((1 << 18,), 7.0))
        assert third.data_ptr() != view.data_ptr(), "a buffer a view still uses was handed out again"
        address = third.data_ptr()
        del third
        assert shm.all_gather(torch.full((1 << 18,), 8.0)).data_ptr() == address, "a free buffer was not reused"
        scattered = shm.reduce_scatter(torch.ones(1 << 19))
        again = shm.reduce_scatter(torch.ones(1 << 19) * 2)
        assert torch.equal(scattered, torch.full_like(scattered, float(world_size))), "reduce_scatter result changed"
        assert torch.equal(again, torch.full_like(again, 2.0 * world_size))
        again.resize_(4)  # a pooled output is an ordinary tensor
    finally:
        shm.close()
    return "ok"


def test_large_outputs_are_reused_only_once_released() -> None:
    reports = h.spawn(_pooled_outputs, 2, h.free_init_method())
    assert reports == ["ok", "ok"], "\n".join(reports)


def _crash_after_init(rank: int, world_size: int, init: str) -> str:
    shm = ShmBackend(rank, world_size, init, timeout_s=h.TIMEOUT_S)
    if rank == 1:
        os._exit(3)  # dies without closing: rank 0 must notice, not wait out its 20 s timeout
    time.sleep(0.2)
    start = time.monotonic()
    try:
        shm.all_reduce(torch.ones(1024))
    except CollectiveError as exc:
        elapsed = time.monotonic() - start
        assert "died" in str(exc), str(exc)
        assert elapsed < 5.0, f"noticed the dead peer after {elapsed:.1f} s"
        return "ok"
    finally:
        shm.close()
    return "all_reduce returned although rank 1 was dead"


def test_a_crashed_peer_is_an_error_not_a_hang() -> None:
    reports = h.spawn(_crash_after_init, 2, h.free_init_method())
    assert reports[0] == "ok", reports[0]


def _one_rank_skips(rank: int, world_size: int, init: str) -> str:
    shm = ShmBackend(rank, world_size, init, timeout_s=2.0)
    try:
        if rank == 1:
            time.sleep(4.0)  # alive but never calls the collective
            return "ok"
        start = time.monotonic()
        with pytest.raises(CollectiveError, match="waited"):
            shm.all_reduce(torch.ones(8))
        elapsed = time.monotonic() - start
        assert 1.5 < elapsed < 4.0, f"timed out after {elapsed:.1f} s with timeout_s=2"
        with pytest.raises(CollectiveError, match="aborted|waited"):  # the group is out of step for good
            shm.barrier()
        return "ok"
    finally:
        shm.close()


def test_a_peer_that_never_calls_times_out() -> None:
    reports = h.spawn(_one_rank_skips, 2, h.free_init_method())
    assert reports == ["ok", "ok"], "\n".join(reports)


@pytest.mark.parametrize("backend", [ShmBackend, GlooBackend])
def test_an_unreachable_rendezvous_is_an_error_within_the_timeout(backend: type) -> None:
    start = time.monotonic()
    with pytest.raises(RendezvousError, match="could not form a group"):
        backend(1, 2, h.free_init_method(), timeout_s=1.5)
    assert time.monotonic() - start < 10.0


def test_the_segment_is_unlinked_once_mapped_and_close_is_idempotent() -> None:
    before = set(SHM_DIR.glob(f"sagellm-coll-{os.getpid()}-*"))
    shm = ShmBackend(0, 1, h.free_init_method(), timeout_s=5.0)
    assert set(SHM_DIR.glob(f"sagellm-coll-{os.getpid()}-*")) == before
    tensor = torch.arange(10, dtype=torch.float32)
    assert shm.all_reduce(tensor) is tensor and torch.equal(tensor, torch.arange(10, dtype=torch.float32))
    shm.close()
    shm.close()
    with pytest.raises(CollectiveError, match="closed"):
        shm.barrier()


def test_bad_options_and_tensors_are_config_errors() -> None:
    init = h.free_init_method()
    with pytest.raises(ConfigError, match="slot_bytes"):
        ShmBackend(0, 1, init, slot_bytes=1000)
    with pytest.raises(ConfigError, match="rank"):
        ShmBackend(2, 2, init)
    with pytest.raises(ConfigError, match="init_method"):
        ShmBackend(0, 1, "file:///tmp/x")
    shm = ShmBackend(0, 1, init, timeout_s=5.0)
    try:
        with pytest.raises(NotSupportedError, match="int64"):
            shm.all_reduce(torch.ones(4, dtype=torch.int64))
        with pytest.raises(ConfigError, match="CPU"):
            shm.all_reduce([1.0, 2.0])
        with pytest.raises(ConfigError, match="0-d"):
            shm.all_gather(torch.tensor(1.0))
        strided = torch.arange(8, dtype=torch.float32)[::2]
        assert torch.equal(shm.all_reduce(strided), torch.tensor([0.0, 2.0, 4.0, 6.0]))
        assert torch.equal(shm.all_gather(torch.ones(2, 3, dtype=torch.int64)), torch.ones(2, 3, dtype=torch.int64))
    finally:
        shm.close()


# ------------------------------------------------------------------------------ the kernel alone


def _reference(inputs: list[torch.Tensor], op: str) -> torch.Tensor:
    acc = inputs[0].float()
    for x in inputs[1:]:
        acc = {"sum": torch.add, "max": torch.maximum, "min": torch.minimum}[op](acc, x.float())
    return acc.to(inputs[0].dtype)


@pytest.mark.parametrize("isa", [None, "portable"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_kernel_levels_match_a_float32_reference(isa: str | None, dtype: torch.dtype) -> None:
    kernel = load_shm_kernel(isa)
    assert kernel.built_with_avx512() == (isa is None and AVX512.requires <= cpu_flags())
    generator = torch.Generator().manual_seed(7)
    for n in (1, 15, 16, 17, 1000):
        inputs = [(torch.randn(n, generator=generator) * 100).to(dtype) for _ in range(3)]
        for code, op in enumerate(("sum", "max", "min")):
            out = torch.empty_like(inputs[0])
            kernel.reduce_tensors(inputs, out, code)
            assert torch.equal(out, _reference(inputs, op)), (isa, dtype, n, op)
