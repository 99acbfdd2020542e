"""Every backend through sagellm.core.testing's CommBackend conformance suite (spawned ranks)."""

from __future__ import annotations

import comm_helpers as h

from sagellm.core.testing.comm_backend import CommBackendConformance, run_missing_peer


class TestMock(CommBackendConformance):
    world_sizes = (1,)
    build_backend = staticmethod(h.build_mock)
    build_ops = staticmethod(h.TorchTensorOps)


class TestGloo(CommBackendConformance):
    world_sizes = (2,)
    build_backend = staticmethod(h.build_gloo)
    build_ops = staticmethod(h.TorchTensorOps)


class TestShm(CommBackendConformance):
    world_sizes = (1, 2, 3)
    build_backend = staticmethod(h.build_shm)
    build_ops = staticmethod(h.TorchTensorOps)


class TestShmPortableKernel(CommBackendConformance):
    """The non-AVX-512 kernel (what a CPU without AVX-512 runs) passes the same suite."""

    world_sizes = (2,)
    build_backend = staticmethod(h.build_shm_portable)
    build_ops = staticmethod(h.TorchTensorOps)


def test_gloo_rank_that_never_joins_is_an_error_within_the_timeout() -> None:
    run_missing_peer(h.build_gloo_lonely, h.TorchTensorOps, h.PEER_TIMEOUT_S)


def test_shm_rank_that_never_joins_is_an_error_within_the_timeout() -> None:
    run_missing_peer(h.build_shm_lonely, h.TorchTensorOps, h.PEER_TIMEOUT_S)
