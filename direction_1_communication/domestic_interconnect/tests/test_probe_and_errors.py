"""A missing or broken plugin, bad options, an unreachable rendezvous, a rank that never joins.

Every one must be a typed sageLLM error naming the cause, within the
backend's timeout (never a hang). The group tests run in-process with the
fake plugins; ``sys.modules[name] = None`` makes a plugin missing no matter
what is on sys.path.
"""

from __future__ import annotations

import sys
import time

import fake_vendors
import pytest
import torch

from sagellm.core import registry
from sagellm.core.config import DomesticInterconnectSection
from sagellm.core.errors import ConfigError, NotSupportedError
from sagellm.core.protocols import InterconnectBackend
from sagellm.core.testing.comm_backend import free_init_method
from sagellm.domestic_interconnect import (
    BACKEND_CLASSES,
    VENDORS,
    HcclBackend,
    InterconnectTimeoutError,
    auto_backend,
    device_string,
    probe,
)

TIMEOUT_S = 2.0
SLACK_S = 6.0  # process-group teardown and a loaded machine


@pytest.fixture
def no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in VENDORS.values():
        if spec.probe_module != "torch":
            monkeypatch.setitem(sys.modules, spec.probe_module, None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)


@pytest.mark.parametrize("key", sorted(VENDORS))
def test_missing_plugin_is_not_supported_naming_module_and_install(key: str, no_plugins: None) -> None:
    spec = VENDORS[key]
    result = probe(spec)
    assert not result.present
    with pytest.raises(NotSupportedError) as info:
        BACKEND_CLASSES[key](0, 1, free_init_method(), TIMEOUT_S)
    message = str(info.value)
    assert f"'{key}'" in message and spec.install_hint in message
    assert (spec.probe_module in message) or ("torch.version.hip" in message)


def test_auto_with_nothing_installed_lists_every_vendor(no_plugins: None) -> None:
    with pytest.raises(NotSupportedError) as info:
        auto_backend(0, 1, free_init_method(), TIMEOUT_S)
    for key in VENDORS:
        assert f"{key}:" in str(info.value)


def test_registry_refuses_a_configured_backend_that_is_not_installed(no_plugins: None) -> None:
    section = DomesticInterconnectSection(implementation="cncl")
    with pytest.raises(NotSupportedError, match="torch_mlu"):
        registry.create("interconnect_backend", section, rank=0, world_size=1, init_method=free_init_method())
    assert {"hccl", "cncl", "rccl", "xccl", "bkcl", "auto"} <= set(registry.available("interconnect_backend"))


@pytest.fixture
def scratch_plugins(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A sys.path entry for throwaway plugins, which are forgotten again after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("torch_npu", "torch_mlu")
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path
    for name in names:
        sys.modules.pop(name, None)


def test_a_plugin_that_exits_on_import_is_absent_not_fatal(scratch_plugins) -> None:
    # torch_npu calls sys.exit() when CANN's libhccl.so is missing
    (scratch_plugins / "torch_npu.py").write_text(
        "import sys\nsys.exit('libhccl.so: cannot open shared object file')\n"
    )
    result = probe(VENDORS["hccl"])
    assert not result.present and "SystemExit" in result.detail and "libhccl.so" in result.detail


def test_a_plugin_that_does_not_register_its_backend_is_absent(scratch_plugins) -> None:
    (scratch_plugins / "torch_mlu.py").write_text("__version__ = 'empty'\n")
    result = probe(VENDORS["cncl"], backend="cncl_never_registered")
    assert not result.present and "no usable 'cncl_never_registered' backend" in result.detail


@pytest.mark.parametrize(
    ("args", "options", "match"),
    [
        ((2, 2), {}, "rank must be"),
        ((0, 0), {}, "world_size must be"),
        ((0, 1), {"stream_priority": 1}, "unknown option.*stream_priority"),
        ((0, 1), {"local_rank": -1}, "local_rank"),
        ((0, 1), {"device": "not-a-device"}, "not a torch device"),
    ],
)
def test_bad_options_are_config_errors(args: tuple[int, int], options: dict, match: str) -> None:
    fake_vendors.use_fake_plugins()
    with pytest.raises(ConfigError, match=match):
        HcclBackend(*args, free_init_method(), TIMEOUT_S, device=options.pop("device", "cpu"), **options)


def test_bad_init_method_and_timeout_are_config_errors() -> None:
    fake_vendors.use_fake_plugins()
    with pytest.raises(ConfigError, match="init_method"):
        HcclBackend(0, 1, "127.0.0.1:29500", TIMEOUT_S, device="cpu")
    with pytest.raises(ConfigError, match="timeout_s"):
        HcclBackend(0, 1, free_init_method(), 0.0, device="cpu")


def test_default_device_is_the_vendors_device_string() -> None:
    assert [device_string(VENDORS[k], 3) for k in ("hccl", "cncl", "rccl", "xccl")] == [
        "npu:3",
        "mlu:3",
        "cuda:3",
        "cuda:3",
    ]


def test_rank_that_never_joins_times_out() -> None:
    start = time.monotonic()
    with pytest.raises(InterconnectTimeoutError, match="never joined"):
        fake_vendors.build("hccl", 0, 2, free_init_method(), timeout_s=TIMEOUT_S)
    assert time.monotonic() - start < TIMEOUT_S + SLACK_S
    assert not torch.distributed.is_initialized()


def test_unreachable_rendezvous_times_out() -> None:
    start = time.monotonic()
    with pytest.raises(InterconnectTimeoutError, match="rendezvous"):  # nobody listens on a fresh port
        fake_vendors.build("cncl", 1, 2, free_init_method(), timeout_s=TIMEOUT_S)
    assert time.monotonic() - start < TIMEOUT_S + SLACK_S


def test_single_rank_group_places_checks_and_closes_twice() -> None:
    backend = fake_vendors.build("xccl", 0, 1, free_init_method(), timeout_s=TIMEOUT_S)
    try:
        assert isinstance(backend, InterconnectBackend)
        assert (backend.name, backend.vendor, backend.device_type) == ("xccl", "Kunlunxin", "cuda")
        assert backend.backend_name == "fake_xccl" and backend.device == torch.device("cpu")
        tensor = torch.arange(4.0)
        assert backend.all_reduce(tensor, op="max") is tensor
        with pytest.raises(ConfigError, match="needs 'cpu'"):
            backend.all_reduce(torch.empty(4, device="meta"))
        with pytest.raises(ConfigError, match="contiguous"):
            backend.all_reduce(torch.arange(8.0)[::2])
        with pytest.raises(ConfigError, match="another rank"):
            backend.send(tensor, dst=0)
        with pytest.raises(ConfigError, match="0-d"):
            backend.all_gather(torch.tensor(1.0))
        with pytest.raises(ConfigError, match="already has a default"):
            fake_vendors.build("hccl", 0, 1, free_init_method(), timeout_s=TIMEOUT_S)
    finally:
        backend.close()
        backend.close()
    assert not torch.distributed.is_initialized()
    with pytest.raises(ConfigError, match="closed"):
        backend.barrier()
