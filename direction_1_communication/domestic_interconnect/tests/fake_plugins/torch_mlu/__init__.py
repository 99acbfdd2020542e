"""Fake torch_mlu for CI: importing it registers ``cncl`` (over gloo), as the real torch_mlu does."""

from sagellm_fake_gloo import register

__version__ = "0.0.0+sagellm.fake"
register("cncl")
