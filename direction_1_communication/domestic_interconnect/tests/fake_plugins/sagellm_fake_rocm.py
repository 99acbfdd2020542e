"""Fake ROCm/DTK torch for CI: sets ``torch.version.hip`` and registers ``fake_rccl`` (over gloo).

A ROCm build serves RCCL as the built-in ``nccl`` backend, which a CPU build
of torch cannot fake; the tests pass ``backend="fake_rccl"``.
"""

import torch
from sagellm_fake_gloo import register

BACKEND = "fake_rccl"
torch.version.hip = "6.2.0-sagellm-fake"
register(BACKEND)
