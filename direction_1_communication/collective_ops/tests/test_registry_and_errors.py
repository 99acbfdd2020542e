"""Building backends through the registry, and what each refuses."""

from __future__ import annotations

import comm_helpers as h
import pytest
import torch

from sagellm.collective_ops import GlooBackend, MockBackend, NcclBackend, ShmBackend
from sagellm.core import registry
from sagellm.core.config import Section
from sagellm.core.errors import ConfigError, NotSupportedError
from sagellm.core.protocols import CommBackend


def test_every_backend_is_an_entry_point() -> None:
    assert {"mock", "gloo", "nccl", "shm"} <= set(registry.available("comm_backend"))
    assert registry.load("comm_backend", "shm") is ShmBackend
    assert registry.load("comm_backend", "gloo") is GlooBackend


def test_the_registry_builds_a_backend_from_a_config_section() -> None:
    section = Section(implementation="mock", options={"rank": 0, "world_size": 1})
    comm = registry.create_comm_backend(section)
    assert isinstance(comm, MockBackend) and isinstance(comm, CommBackend)
    comm.close()
    shm = registry.create_comm_backend(
        Section(implementation="shm", options={"rank": 0, "world_size": 1, "init_method": h.free_init_method()})
    )
    assert shm.name == "shm" and shm.world_size == 1
    shm.close()


def test_mock_is_a_group_of_one() -> None:
    with pytest.raises(ConfigError, match="group of one"):
        MockBackend(0, 2)
    with pytest.raises(ConfigError, match="rank"):
        MockBackend(1, 1)
    with pytest.raises(ConfigError, match="another rank"):
        MockBackend().send(torch.ones(1), 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: nccl is not refused here")
def test_nccl_without_cuda_says_why() -> None:
    with pytest.raises(NotSupportedError, match="CUDA"):
        NcclBackend(0, 1, h.free_init_method())


def test_gloo_rejects_bad_groups_before_any_rendezvous() -> None:
    with pytest.raises(ConfigError, match="world_size"):
        GlooBackend(0, 0)
    with pytest.raises(ConfigError, match="init_method"):
        GlooBackend(0, 1, "env://")
    with pytest.raises(ConfigError, match="timeout_s"):
        GlooBackend(0, 1, h.free_init_method(), timeout_s=0)
