"""Core's CommBackend conformance suite on every vendor backend, over fake plugins (gloo), 2 ranks.

The real probe, device resolution, process-group initialisation and
collective code run; only the library behind the vendor's backend name is
gloo (see tests/fake_plugins). Each class also checks that a peer which
never joins is a SageLLMError within the timeout, not a hang.
"""

from __future__ import annotations

import fake_vendors
import torch_ops

from sagellm.core.testing.comm_backend import CommBackendConformance


class TestHcclConformance(CommBackendConformance):
    world_sizes = (2,)
    peer_timeout_s = fake_vendors.PEER_TIMEOUT_S
    build_backend = staticmethod(fake_vendors.build_hccl)
    build_ops = staticmethod(torch_ops.TorchTensorOps)


class TestCnclConformance(CommBackendConformance):
    world_sizes = (2,)
    peer_timeout_s = fake_vendors.PEER_TIMEOUT_S
    build_backend = staticmethod(fake_vendors.build_cncl)
    build_ops = staticmethod(torch_ops.TorchTensorOps)


class TestRcclConformance(CommBackendConformance):
    world_sizes = (2,)
    peer_timeout_s = fake_vendors.PEER_TIMEOUT_S
    build_backend = staticmethod(fake_vendors.build_rccl)
    build_ops = staticmethod(torch_ops.TorchTensorOps)


class TestXcclConformance(CommBackendConformance):
    world_sizes = (2,)
    peer_timeout_s = fake_vendors.PEER_TIMEOUT_S
    build_backend = staticmethod(fake_vendors.build_xccl)
    build_ops = staticmethod(torch_ops.TorchTensorOps)
