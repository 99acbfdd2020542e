"""OWL: block shares keep the target mean, stay within +-lambda, and fall where activations have outliers."""

from __future__ import annotations

import pytest
import torch

from sagellm.sparsity import MagnitudeSparsifier, WandaSparsifier, outlier_ratio, owl_sparsities


def test_outlier_ratio_counts_scores_above_m_times_the_mean() -> None:
    scores = [torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 31.0])]
    # mean = 40 / 10 = 4; above 5 x 4 = 20: only the 31
    assert outlier_ratio(scores, 5.0) == pytest.approx(0.1)
    assert outlier_ratio(scores, 10.0) == 0.0


def test_owl_sparsities_keep_the_mean_and_order_and_stay_within_lambda() -> None:
    ratios = [0.001, 0.02, 0.005, 0.3, 0.01]  # skewed: the plain OWL map would put 0.3's block 0.125 below
    shares = owl_sparsities(ratios, 0.6, 0.08)
    assert sum(shares) / len(shares) == pytest.approx(0.6, abs=1e-9)
    assert all(abs(s - 0.6) <= 0.08 + 1e-12 for s in shares)
    order = sorted(range(5), key=lambda i: ratios[i])
    assert [shares[i] for i in order] == sorted(shares, reverse=True)  # more outliers, fewer zeros


def test_owl_spread_is_two_lambda_when_the_ratios_are_balanced() -> None:
    shares = owl_sparsities([0.0, 0.5, 1.0], 0.5, 0.1)  # OWL's linear map: min -> +lambda, max -> -lambda
    assert shares == pytest.approx([0.6, 0.5, 0.4])


def test_equal_ratios_or_lambda_zero_give_uniform_shares() -> None:
    assert owl_sparsities([0.1, 0.1, 0.1], 0.5, 0.08) == [0.5, 0.5, 0.5]
    assert owl_sparsities([0.1, 0.2], 0.5, 0.0) == [0.5, 0.5]
    assert owl_sparsities([], 0.5, 0.08) == []


def _block(outlier_gain: float, generator: torch.Generator) -> list[tuple[torch.Tensor, object]]:
    sparsifier = WandaSparsifier(pattern="unstructured", owl_lambda=0.08)
    pairs = []
    for _ in range(2):
        x = torch.randn(64, 128, generator=generator)
        x[:, :4] *= outlier_gain  # a few loud channels, as LLM activations have
        observer = sparsifier.calibration_observer()
        observer.observe(x)
        pairs.append((torch.randn(32, 128, generator=generator), observer.result))
    return pairs


def test_wanda_layer_sparsities_prune_outlier_heavy_blocks_less() -> None:
    generator = torch.Generator().manual_seed(0)
    gains = [1.0, 30.0, 3.0, 10.0]
    blocks = [_block(gain, generator) for gain in gains]
    sparsifier = WandaSparsifier(pattern="unstructured", sparsity=0.5, owl_lambda=0.08)
    shares = sparsifier.layer_sparsities(blocks)
    assert len(shares) == 4 and sum(shares) / 4 == pytest.approx(0.5, abs=1e-6)
    assert all(abs(s - 0.5) <= 0.08 + 1e-9 for s in shares)
    assert shares[1] < shares[3] < shares[2] <= shares[0]  # ordered by outlier gain
    assert shares[1] < 0.5 < shares[0]
    assert WandaSparsifier(pattern="unstructured").layer_sparsities(blocks) == [0.5] * 4  # OWL off by default


def test_magnitude_owl_uses_weight_magnitudes() -> None:
    generator = torch.Generator().manual_seed(1)
    quiet = torch.randn(32, 64, generator=generator)
    spiky = quiet.clone()
    spiky[0, :8] = 50.0
    shares = MagnitudeSparsifier(sparsity=0.4, owl_lambda=0.1).layer_sparsities([[(quiet, None)], [(spiky, None)]])
    assert shares == pytest.approx([0.5, 0.3])
