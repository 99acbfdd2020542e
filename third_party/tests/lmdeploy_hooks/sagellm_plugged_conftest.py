"""conftest for LMDeploy's own tests/pytorch/paging with sageLLM's modules plugged into every scheduler and trie.

Copied next to a copy of those tests (tools/tests/test_lmdeploy_patches.py
does) so that each ``BlockTrie`` and ``Scheduler`` they build gets, through
``sagellm.engines.lmdeploy``: the hash-chain prefix index and the LRU policy
behind patches 0001/0002, and the FIFO IR builder as patch 0003's plan
provider. LMDeploy's assertions then check that sageLLM's modules reproduce
LMDeploy's own decisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lmdeploy.pytorch.paging import scheduler as scheduler_module
from lmdeploy.pytorch.paging.block_trie import BlockTrie
from sagellm.core.config import load_config
from sagellm.engines.lmdeploy import build_modules, install, install_prefix_hook

CONFIG = load_config(
    prefix_cache={"implementation": "hash_chain"},
    eviction_policy={"implementation": "lru"},
    scheduler_ir={
        "implementation": "fifo",
        "enable_chunked_prefill": False,
        "max_num_seqs": 1024,  # LMDeploy's own max_batches stays the binding limit
        "max_num_batched_tokens": 1 << 20,
    },
)
INSTALLED: list[Any] = []
PREFIX = [0, 0]  # blocks the sageLLM index proposed to the trie, blocks it indexed
PLUGGED: list[int] = []  # per test: how many schedulers and tries got sageLLM's modules


@pytest.fixture(autouse=True)
def sagellm_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every BlockTrie gets the prefix index; every Scheduler the full set (its trie's first hook replaced)."""
    INSTALLED.clear()
    trie_init = BlockTrie.__init__
    scheduler_init = scheduler_module.Scheduler.__init__

    def plugged_trie(self: Any, *args: Any, **kwargs: Any) -> None:
        trie_init(self, *args, **kwargs)
        INSTALLED.append(install_prefix_hook(self, build_modules(CONFIG, block_size=self.block_size)))

    def plugged_scheduler(self: Any, *args: Any, **kwargs: Any) -> None:
        scheduler_init(self, *args, **kwargs)
        own = self.block_trie.prefix_hook
        self.block_trie.set_prefix_hook(None)
        self.block_manager.remove_eviction_callback(own.on_eviction)
        INSTALLED.append(install(self, CONFIG))

    monkeypatch.setattr(BlockTrie, "__init__", plugged_trie)
    monkeypatch.setattr(scheduler_module.Scheduler, "__init__", plugged_scheduler)
    yield INSTALLED
    PLUGGED.append(len(INSTALLED))
    for plugged in INSTALLED:
        hook = getattr(plugged, "prefix_hook", plugged)  # install() gives LMDeployPlugins, a bare trie its hook
        if hook is not None:
            PREFIX[0] += hook.num_proposed_blocks
            PREFIX[1] += hook.num_stored_blocks


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how much ran with sageLLM's modules, so a run that plugged nothing in cannot pass unnoticed."""
    tests = sum(1 for n in PLUGGED if n)
    terminalreporter.write_line(
        f"sageLLM modules plugged in: {sum(PLUGGED)} LMDeploy schedulers/tries in {tests} of {len(PLUGGED)} tests; "
        f"the prefix index proposed {PREFIX[0]} blocks and indexed {PREFIX[1]}"
    )
