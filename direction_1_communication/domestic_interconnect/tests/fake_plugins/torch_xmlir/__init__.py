"""Fake torch_xmlir for CI.

Kunlunxin's XPyTorch serves XCCL as the built-in ``nccl`` backend, which a
CPU build of torch cannot fake; this registers ``fake_xccl`` (over gloo) and
the tests pass ``backend="fake_xccl"``.
"""

from sagellm_fake_gloo import register

__version__ = "0.0.0+sagellm.fake"
BACKEND = "fake_xccl"
register(BACKEND)
