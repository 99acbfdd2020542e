"""Core's CommBackend conformance suite on every vendor backend, over fake plugins (gloo), 2 ranks.

The real probe, device resolution, process-group initialisation and
collective code run; only the library behind the vendor's backend name is
gloo (see tests/fake_plugins). Each vendor also checks that a peer which
never joins is a SageLLMError within the timeout, not a hang.

One class, parametrized over the vendor table, so a new row in
``VENDORS`` is tested without a new class (its fake in fake_vendors.FAKES
is then required).
"""

from __future__ import annotations

import fake_vendors
import pytest
import torch_ops

from sagellm.core.testing.comm_backend import BackendFactory, CommBackendConformance
from sagellm.domestic_interconnect import VENDORS


class TestVendorConformance(CommBackendConformance):
    world_sizes = (2,)
    peer_timeout_s = fake_vendors.PEER_TIMEOUT_S
    build_ops = staticmethod(torch_ops.TorchTensorOps)
    # Set per test by _vendor to a picklable partial, replacing the base class's method.
    build_backend: BackendFactory  # type: ignore[assignment]

    @pytest.fixture(autouse=True, params=list(VENDORS))
    def _vendor(self, request: pytest.FixtureRequest) -> None:
        """Every inherited test runs once per vendor, building that vendor's backend."""
        self.build_backend = fake_vendors.builder(request.param)
