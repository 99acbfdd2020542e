"""Both managers pass core's OverlapManager suite, and are reachable through the registry."""

from __future__ import annotations

import pytest

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError, NotSupportedError
from sagellm.core.testing.overlap_manager import OverlapManagerConformance
from sagellm.overlap_pipeline import SerialOverlapManager, ThreadOverlapManager, cuda_available


class TestThreadOverlapManager(OverlapManagerConformance):
    def make_manager(self) -> ThreadOverlapManager:
        return ThreadOverlapManager(cuda_streams="off")


class TestThreadOverlapManagerTwoWorkers(OverlapManagerConformance):
    def make_manager(self) -> ThreadOverlapManager:
        return ThreadOverlapManager(num_workers=2, cuda_streams="off")


class TestSerialOverlapManager(OverlapManagerConformance):
    concurrent = False

    def make_manager(self) -> SerialOverlapManager:
        return SerialOverlapManager()


@pytest.mark.skipif(not cuda_available(), reason="needs torch with a CUDA device")
class TestThreadOverlapManagerCudaStreams(OverlapManagerConformance):
    def make_manager(self) -> ThreadOverlapManager:
        manager = ThreadOverlapManager(cuda_streams="on")
        assert manager.uses_cuda_streams
        return manager


@pytest.mark.parametrize("name, cls", [("threads", ThreadOverlapManager), ("serial", SerialOverlapManager)])
def test_the_registry_builds_each_manager(name: str, cls: type) -> None:
    config = SageLLMConfig(overlap_pipeline={"implementation": name})
    manager = registry.create_overlap_manager(config)
    try:
        assert isinstance(manager, cls)
    finally:
        manager.close()


def test_registry_options_reach_the_thread_manager() -> None:
    config = SageLLMConfig(overlap_pipeline={"implementation": "threads", "options": {"num_workers": 3}})
    manager = registry.create_overlap_manager(config)
    try:
        assert isinstance(manager, ThreadOverlapManager)
        assert manager._pool.num_workers == 3
    finally:
        manager.close()


@pytest.mark.parametrize("bad", [0, -1, 65, 1.5, True, "2"])
def test_bad_worker_counts_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_workers"):
        ThreadOverlapManager(num_workers=bad)  # type: ignore[arg-type]


def test_bad_cuda_stream_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cuda_streams"):
        ThreadOverlapManager(cuda_streams="maybe")


@pytest.mark.skipif(cuda_available(), reason="checks the CPU-only refusal")
def test_cuda_streams_on_without_cuda_is_not_supported() -> None:
    with pytest.raises(NotSupportedError, match="CUDA"):
        ThreadOverlapManager(cuda_streams="on")


def test_auto_without_cuda_uses_plain_threads() -> None:
    manager = ThreadOverlapManager(cuda_streams="auto")
    try:
        assert manager.uses_cuda_streams == cuda_available()
    finally:
        manager.close()
