"""Registry: in-process registration, entry-point discovery, building and protocol checks."""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from sagellm.core import registry
from sagellm.core.config import EvictionPolicySection, SageLLMConfig, Section, load_config
from sagellm.core.errors import RegistryError
from sagellm.core.protocols import EvictionPolicy
from sagellm.core.types import BlockId, EvictionContext


class TinyLRU:
    """Smallest structural EvictionPolicy; records how it was built."""

    def __init__(self, capacity: int = 0, pool: object = None) -> None:
        self.capacity, self.pool = capacity, pool
        self._order: OrderedDict[BlockId, None] = OrderedDict()

    @property
    def name(self) -> str:
        return "tiny_lru"

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        self._order[block_id] = None

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        self._order.move_to_end(block_id)

    def on_remove(self, block_id: BlockId) -> None:
        self._order.pop(block_id, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        return [b for b in self._order if context.is_evictable(b)][: context.num_blocks]

    def __len__(self) -> int:
        return len(self._order)


class TinyLRUFromConfig(TinyLRU):
    """Built through ``from_config``: receives the whole section plus dependencies."""

    seen_section: Section | None = None

    @classmethod
    def from_config(cls, section: Section, **deps: Any) -> TinyLRUFromConfig:
        cls.seen_section = section
        return cls(capacity=10 * int(section.options.get("capacity", 1)), **deps)


class NotAPolicy:
    def __init__(self, **_: Any) -> None:
        pass


@pytest.fixture
def registered() -> Iterator[None]:
    registry.register("eviction_policy", "tiny", TinyLRU)
    registry.register("eviction_policy", "tiny_cfg", TinyLRUFromConfig)
    registry.register("eviction_policy", "bogus", NotAPolicy)
    yield
    for name in ("tiny", "tiny_cfg", "bogus"):
        registry.unregister("eviction_policy", name)


def _section(name: str, **options: Any) -> EvictionPolicySection:
    return EvictionPolicySection(implementation=name, options=options)


# --------------------------------------------------------------------------- in-process


def test_register_and_unregister(registered: None) -> None:
    assert registry.load("eviction_policy", "tiny") is TinyLRU
    assert "tiny" in registry.available("eviction_policy")
    assert registry.available("eviction_policy")["tiny"].startswith("<registered>")
    registry.unregister("eviction_policy", "tiny")
    assert "tiny" not in registry.available("eviction_policy")
    registry.unregister("eviction_policy", "tiny")  # idempotent


def test_create_via_plain_callable_passes_options_and_deps(registered: None) -> None:
    pool = object()
    policy = registry.create_eviction_policy(_section("tiny", capacity=5), pool=pool)
    assert isinstance(policy, TinyLRU) and isinstance(policy, EvictionPolicy)
    assert policy.capacity == 5 and policy.pool is pool


def test_create_via_from_config(registered: None) -> None:
    section = _section("tiny_cfg", capacity=3)
    policy = registry.create("eviction_policy", section, pool="p")
    assert isinstance(policy, TinyLRUFromConfig)
    assert policy.capacity == 30 and policy.pool == "p"
    assert TinyLRUFromConfig.seen_section is section


def test_create_from_whole_config_picks_the_section(registered: None) -> None:
    cfg = load_config(eviction_policy={"implementation": "tiny", "options": {"capacity": 7}})
    policy = registry.create_eviction_policy(cfg)
    assert isinstance(policy, TinyLRU) and policy.capacity == 7


def test_registered_name_shadows_entry_point(registered: None) -> None:
    registry.register("eviction_policy", "tiny", TinyLRUFromConfig)
    assert registry.load("eviction_policy", "tiny") is TinyLRUFromConfig


def test_protocol_mismatch(registered: None) -> None:
    with pytest.raises(RegistryError, match="NotAPolicy.*EvictionPolicy"):
        registry.create_eviction_policy(_section("bogus"))


def test_protocol_mismatch_across_kinds(registered: None) -> None:
    """A policy registered as a prefix index is caught, not handed to the engine."""
    registry.register("prefix_index", "tiny", TinyLRU)
    try:
        with pytest.raises(RegistryError, match="PrefixIndex"):
            registry.create_prefix_index(Section(implementation="tiny"))
    finally:
        registry.unregister("prefix_index", "tiny")


def test_unknown_name_lists_available(registered: None) -> None:
    with pytest.raises(RegistryError) as info:
        registry.create_eviction_policy(_section("nope"))
    message = str(info.value)
    assert "'nope'" in message and "tiny" in message and "tiny_cfg" in message
    assert "eviction_policy" in message  # the config section to fix


def test_unknown_name_with_nothing_installed() -> None:
    with pytest.raises(RegistryError, match="none installed|available"):
        registry.load("cot_accelerator", "definitely-not-installed")


def test_unknown_kind() -> None:
    for call in (
        lambda: registry.register("warp_drive", "x", TinyLRU),
        lambda: registry.unregister("warp_drive", "x"),
        lambda: registry.available("warp_drive"),
        lambda: registry.load("warp_drive", "x"),
        lambda: registry.create("warp_drive", Section()),
    ):
        with pytest.raises(RegistryError, match="warp_drive.*known: prefix_index"):
            call()


def test_registry_error_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        registry.load("eviction_policy", "nope")


# --------------------------------------------------------------------------- one create_* per group


@pytest.mark.parametrize("kind", sorted(registry.GROUPS))
def test_every_group_has_a_typed_create_function(kind: str) -> None:
    fn = getattr(registry, f"create_{kind}", None)
    assert callable(fn), f"registry.create_{kind} missing"
    hints = get_type_hints(fn)
    assert hints["return"] is registry.GROUPS[kind].protocol
    assert list(inspect.signature(fn).parameters) == ["config", "deps"]


def test_no_stray_create_functions() -> None:
    names = {n[len("create_") :] for n in dir(registry) if n.startswith("create_")}
    assert names == set(registry.GROUPS)


@pytest.mark.parametrize("kind", sorted(registry.GROUPS))
def test_group_names_are_consistent(kind: str) -> None:
    group = registry.GROUPS[kind]
    assert group.entry_point_group == f"sagellm.{kind}"
    assert group.section in SageLLMConfig.model_fields
    assert getattr(group.protocol, "_is_runtime_protocol", False), f"{group.protocol} is not runtime-checkable"


@pytest.mark.parametrize("kind", sorted(registry.GROUPS))
def test_each_create_function_dispatches_to_its_kind(kind: str) -> None:
    """Register a non-conforming object under each kind: every create_* must reach its own check."""
    registry.register(kind, "probe", NotAPolicy)
    try:
        with pytest.raises(RegistryError, match=registry.GROUPS[kind].protocol.__name__):
            getattr(registry, f"create_{kind}")(Section(implementation="probe"))
    finally:
        registry.unregister(kind, "probe")


# --------------------------------------------------------------------------- entry points


PLUGIN_SOURCE = textwrap.dedent(
    """
    class PluginPolicy:
        def __init__(self, capacity=0):
            self.capacity = capacity
            self._blocks = {}

        @property
        def name(self):
            return "plugin"

        def on_insert(self, block_id, now=0.0):
            self._blocks[block_id] = now

        def on_access(self, block_id, now=0.0):
            self._blocks[block_id] = now

        def on_remove(self, block_id):
            self._blocks.pop(block_id, None)

        def select_victims(self, context):
            order = sorted(self._blocks, key=self._blocks.get)
            return [b for b in order if context.is_evictable(b)][: context.num_blocks]

        def __len__(self):
            return len(self._blocks)
    """
)


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway installed distribution: a module plus a ``*.dist-info`` declaring entry points.

    ``importlib.metadata`` finds any dist-info directory on ``sys.path``, which is exactly
    what ``pip install`` leaves behind, so this exercises the real discovery path.
    """
    module = f"fake_sagellm_plugin_{uuid.uuid4().hex[:8]}"
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{module}.py").write_text(PLUGIN_SOURCE)
    dist_info = site / f"{module}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        "[sagellm.eviction_policy]\n"
        f"fake_plugin = {module}:PluginPolicy\n"
        f"broken_plugin = {module}:DoesNotExist\n"
        "\n[sagellm.prefix_index]\n"
        f"wrong_kind = {module}:PluginPolicy\n"
    )
    monkeypatch.syspath_prepend(str(site))  # also calls importlib.invalidate_caches()
    yield module
    sys.modules.pop(module, None)
    importlib.invalidate_caches()


def test_entry_point_is_discovered(plugin_dist: str) -> None:
    found = registry.available("eviction_policy")
    assert found["fake_plugin"] == f"{plugin_dist}:PluginPolicy"
    assert "fake_plugin" not in registry.available("prefix_index")


def test_entry_point_is_built_and_checked(plugin_dist: str) -> None:
    policy = registry.create_eviction_policy(_section("fake_plugin", capacity=4))
    assert type(policy).__module__ == plugin_dist
    assert isinstance(policy, EvictionPolicy) and policy.capacity == 4  # type: ignore[attr-defined]
    policy.on_insert(1, now=2.0)
    policy.on_insert(2, now=1.0)
    assert policy.select_victims(EvictionContext(num_blocks=1)) == [2]


def test_entry_point_from_whole_config(plugin_dist: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGELLM__EVICTION_POLICY__IMPLEMENTATION", "fake_plugin")
    policy = registry.create_eviction_policy(load_config())
    assert type(policy).__name__ == "PluginPolicy"


def test_broken_entry_point_names_itself(plugin_dist: str) -> None:
    with pytest.raises(RegistryError, match=f"broken_plugin.*{plugin_dist}:DoesNotExist"):
        registry.create_eviction_policy(_section("broken_plugin"))


def test_entry_point_in_wrong_group_fails_protocol_check(plugin_dist: str) -> None:
    with pytest.raises(RegistryError, match="does not implement PrefixIndex"):
        registry.create_prefix_index(Section(implementation="wrong_kind"))


def test_entry_point_disappears_with_its_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        site = tmp_path / "gone"
        (site / "gone_plugin-0.1.dist-info").mkdir(parents=True)
        (site / "gone_plugin-0.1.dist-info" / "METADATA").write_text("Name: gone_plugin\nVersion: 0.1\n")
        (site / "gone_plugin-0.1.dist-info" / "entry_points.txt").write_text(
            "[sagellm.eviction_policy]\ngone = gone_plugin:Gone\n"
        )
        patch.syspath_prepend(str(site))
        assert "gone" in registry.available("eviction_policy")
    importlib.invalidate_caches()
    assert "gone" not in registry.available("eviction_policy")
