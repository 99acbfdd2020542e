"""Every test draws its random tensors from the same seed, so a tolerance that holds once holds in CI."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    torch.manual_seed(0)
