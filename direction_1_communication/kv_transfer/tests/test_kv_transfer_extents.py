"""The staging area's first-fit allocator: alignment, exhaustion, coalescing out-of-order frees."""

from __future__ import annotations

import pytest

from sagellm.kv_transfer.extents import ExtentAllocator


def test_allocations_are_aligned_and_disjoint() -> None:
    extents = ExtentAllocator(4096, alignment=256)
    a, b = extents.allocate(10), extents.allocate(300)
    assert (a, b) == (0, 256)
    assert extents.num_used_bytes == 256 + 512


def test_full_area_returns_none_and_frees_make_room() -> None:
    extents = ExtentAllocator(1024, alignment=256)
    runs = [extents.allocate(256) for _ in range(4)]
    assert extents.allocate(1) is None
    extents.free(runs[1])
    assert extents.allocate(256) == runs[1]


def test_out_of_order_frees_coalesce_into_one_hole() -> None:
    extents = ExtentAllocator(1024, alignment=256)
    a, b, c, d = (extents.allocate(256) for _ in range(4))
    for run in (c, a, d, b):
        extents.free(run)  # type: ignore[arg-type]
    assert extents.num_free_bytes == 1024
    assert extents.allocate(1024) == 0  # one hole again, not four


def test_capacity_rounds_down_to_alignment_and_double_free_is_an_error() -> None:
    extents = ExtentAllocator(1000, alignment=256)
    assert extents.capacity == 768
    run = extents.allocate(1)
    assert run is not None
    extents.free(run)
    with pytest.raises(KeyError):
        extents.free(run)
