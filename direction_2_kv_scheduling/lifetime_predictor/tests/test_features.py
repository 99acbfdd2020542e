"""Feature bins: in range, monotone in what they measure, and only from the block's own record."""

from __future__ import annotations

from sagellm.core.types import KVBlockMeta
from sagellm.lifetime_predictor.features import FEATURES, NUM_WEIGHTS, OFFSETS, encode, log_bin, time_bin


def test_every_bin_lands_in_its_own_feature_range() -> None:
    metas = [
        KVBlockMeta(1),
        KVBlockMeta(
            2, created_at=0.0, last_access=1e9, access_count=10**6, prefix_depth=10**6, request_tokens=10**9, turn=99
        ),
        KVBlockMeta(3, created_at=5.0, last_access=5.001, access_count=1, prefix_depth=3, request_tokens=700, turn=2),
    ]
    for meta in metas:
        row = encode(meta)
        assert len(row) == len(FEATURES)
        for i, index in enumerate(row):
            assert OFFSETS[i] <= index < OFFSETS[i] + FEATURES[i].num_bins
            assert index < NUM_WEIGHTS


def test_time_bins_grow_with_time_and_cap() -> None:
    bins = [time_bin(t) for t in (0.0, 0.001, 0.02, 0.5, 10.0, 600.0, 1e9)]
    assert bins == sorted(bins)
    assert bins[0] == 0 and bins[-1] == FEATURES[2].num_bins - 1


def test_log_bins() -> None:
    assert [log_bin(v, 10) for v in (0, 1, 2, 3, 4, 7, 8, 10**9)] == [0, 1, 2, 2, 3, 3, 4, 9]


def test_mean_gap_needs_a_reuse() -> None:
    fresh = encode(KVBlockMeta(1, created_at=0.0, last_access=30.0, access_count=0))
    reused = encode(KVBlockMeta(1, created_at=0.0, last_access=30.0, access_count=3))
    assert fresh[3] == OFFSETS[3]  # bin 0: no rhythm yet
    assert reused[3] == OFFSETS[3] + time_bin(10.0)
