"""The pure mask functions prune exactly the counts their comparison groups call for, and the right entries."""

from __future__ import annotations

import torch

from sagellm.sparsity import magnitude_mask, parse_pattern, sparsegpt_prune, wanda_mask, wanda_scores


def _weight(rows: int = 16, cols: int = 64) -> torch.Tensor:
    return torch.randn(rows, cols)  # continuous: no exact zeros, no ties


def test_magnitude_unstructured_prunes_the_smallest_share_of_the_whole_layer() -> None:
    weight = _weight()
    mask = magnitude_mask(weight, parse_pattern("unstructured", 0.3), 0.3)
    assert int(mask.sum()) == round(0.3 * weight.numel())
    assert weight.abs()[mask].max() <= weight.abs()[~mask].min()
    assert mask.sum(dim=1).unique().numel() > 1  # one comparison group, so rows differ


def test_wanda_unstructured_prunes_the_same_count_in_every_row() -> None:
    weight = _weight()
    norms = torch.rand(64) + 0.1
    mask = wanda_mask(weight, norms, parse_pattern("unstructured", 0.3), 0.3)
    assert mask.sum(dim=1).tolist() == [round(0.3 * 64)] * 16
    scores = wanda_scores(weight, norms)
    for row in range(16):
        assert scores[row][mask[row]].max() <= scores[row][~mask[row]].min()


def test_wanda_keeps_small_weights_on_loud_channels() -> None:
    weight = _weight()
    weight[:, 5] = 0.01 * torch.sign(weight[:, 5])  # tiny weights ...
    norms = torch.ones(64)
    norms[5] = 1e4  # ... on a channel with huge inputs
    assert magnitude_mask(weight, parse_pattern("2:4"), 0.5)[:, 5].all()
    assert not wanda_mask(weight, norms, parse_pattern("2:4"), 0.5)[:, 5].any()


def test_n_m_masks_prune_exactly_m_minus_n_per_group() -> None:
    weight = _weight()
    for text in ("2:4", "4:8", "1:4", "3:8"):
        pattern = parse_pattern(text)
        assert pattern.m is not None
        for mask in (magnitude_mask(weight, pattern, 0.0), wanda_mask(weight, torch.rand(64), pattern, 0.0)):
            per_group = mask.reshape(16, -1, pattern.m).sum(dim=-1)
            assert (per_group == pattern.num_pruned).all(), text


def test_sparsegpt_prunes_exact_counts_per_block_and_group() -> None:
    weight, x = _weight(16, 256), torch.randn(512, 256)
    pruned = sparsegpt_prune(weight, x.T @ x, parse_pattern("unstructured", 0.4), 0.4, blocksize=128)
    zeros = pruned == 0
    assert [int(zeros[:, i : i + 128].sum()) for i in (0, 128)] == [round(0.4 * 16 * 128)] * 2
    for text in ("2:4", "4:8"):
        pattern = parse_pattern(text)
        assert pattern.m is not None
        pruned = sparsegpt_prune(weight, x.T @ x, pattern, 0.5, blocksize=100)  # 100 -> 100 or 96: groups aligned
        per_group = (pruned == 0).reshape(16, -1, pattern.m).sum(dim=-1)
        assert (per_group == pattern.num_pruned).all(), text


def test_sparsegpt_with_a_fixed_mask_prunes_that_mask_and_updates_the_rest() -> None:
    weight, x = _weight(), torch.randn(256, 64)
    mask = magnitude_mask(weight, parse_pattern("2:4"), 0.5)
    pruned = sparsegpt_prune(weight, x.T @ x, parse_pattern("2:4"), 0.5, mask=mask)
    assert torch.equal(pruned == 0, mask)
    assert not torch.allclose(pruned[~mask], weight[~mask])  # kept weights were reconstructed


def test_sparsegpt_zeroes_inputs_that_never_fire() -> None:
    weight, x = _weight(), torch.randn(256, 64)
    x[:, 7] = 0.0
    pruned = sparsegpt_prune(weight, x.T @ x, parse_pattern("unstructured", 0.5), 0.5)
    assert (pruned[:, 7] == 0).all() and torch.isfinite(pruned).all()


def test_sparsegpt_lazy_blocks_give_the_same_weights_as_one_block() -> None:
    """Batching the updates is exact algebra: any block width must give the same pruned weight for a mask."""
    weight, x = _weight(8, 96), torch.randn(512, 96) @ (torch.randn(96, 96) / 10 + torch.eye(96))
    pattern = parse_pattern("2:4")
    mask = magnitude_mask(weight, pattern, 0.5)
    whole = sparsegpt_prune(weight, x.T @ x, pattern, 0.5, blocksize=96, mask=mask)
    for blocksize in (4, 32, 40):
        torch.testing.assert_close(
            sparsegpt_prune(weight, x.T @ x, pattern, 0.5, blocksize=blocksize, mask=mask), whole
        )
