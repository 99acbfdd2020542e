"""The CUDA variant: comm runs on a side stream, ordered against the caller's stream (GPU only)."""

from __future__ import annotations

import pytest

from sagellm.overlap_pipeline import ThreadOverlapManager, cuda_available

pytestmark = pytest.mark.skipif(not cuda_available(), reason="needs torch with a CUDA device")


def test_comm_runs_on_the_side_stream_and_its_result_is_ready_for_the_caller() -> None:
    import torch

    manager = ThreadOverlapManager(cuda_streams="on")
    try:
        x = torch.randn(1 << 22, device="cuda")
        caller_stream = torch.cuda.current_stream()
        seen: list[object] = []

        def comm() -> torch.Tensor:
            seen.append(torch.cuda.current_stream())
            return (x * 2).sum()  # enqueued on the side stream, read by the caller after wait

        for _ in range(3):
            x.add_(1)  # written on the caller's stream just before: comm must see it
            expected = (x * 2).sum()
            (computed, reduced) = manager.schedule(lambda: (x + 1).sum(), comm)
            torch.testing.assert_close(reduced, expected)
            torch.testing.assert_close(computed, (x + 1).sum())
        pending = manager.start(comm)
        torch.testing.assert_close(pending.wait(10), (x * 2).sum())
        assert seen and all(stream != caller_stream for stream in seen)
    finally:
        manager.close()
