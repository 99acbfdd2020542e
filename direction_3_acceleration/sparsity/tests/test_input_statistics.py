"""The calibration observer sums what Wanda and SparseGPT need, over any number and shape of batches."""

from __future__ import annotations

import torch

from sagellm.sparsity import InputStatistics


def test_sums_of_squares_and_gram_over_batches() -> None:
    first, second = torch.randn(2, 5, 16), torch.randn(7, 16)
    observer = InputStatistics(gram=True)
    assert observer.result is None
    observer.observe(first)
    snapshot = observer.result
    observer.observe(second.to(torch.bfloat16))
    observer.observe(torch.empty(0, 16))
    rows = torch.cat([first.reshape(-1, 16), second.to(torch.bfloat16).float()])
    result = observer.result
    assert result is not None and result.num_rows == 17
    torch.testing.assert_close(result.sum_sq, rows.square().sum(0))
    torch.testing.assert_close(result.channel_norms, rows.norm(dim=0))
    assert result.gram is not None
    torch.testing.assert_close(result.gram, rows.T @ rows)
    assert snapshot is not None and snapshot.num_rows == 10  # an earlier result is not changed by later batches
    torch.testing.assert_close(snapshot.sum_sq, first.reshape(-1, 16).square().sum(0))


def test_gram_only_when_asked() -> None:
    observer = InputStatistics()
    observer.observe(torch.randn(4, 8))
    assert observer.result is not None and observer.result.gram is None
