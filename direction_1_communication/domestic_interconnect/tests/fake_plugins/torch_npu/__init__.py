"""Fake torch_npu for CI: importing it registers ``hccl`` (over gloo), as the real torch_npu does."""

from sagellm_fake_gloo import register

__version__ = "0.0.0+sagellm.fake"
register("hccl")
