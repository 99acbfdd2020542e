"""The registry hook both channels share: build a channel from its config section and its dependencies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError

ChannelT = TypeVar("ChannelT")


def channel_from_config(
    factory: Callable[..., ChannelT], section: Section, deps: dict[str, Any], missing: str
) -> ChannelT:
    """``factory(kv, node, **options)``, with ``kv`` and ``node`` from ``deps`` (or ``node`` from the options).

    ``missing`` is the ConfigError message when either is absent (it names
    the channel and what its ``node`` looks like). An unknown option is a
    ConfigError naming it, not a bare TypeError from the constructor.
    """
    options = {**section.options, **deps}
    kv, node = options.pop("kv", None), options.pop("node", None)
    if kv is None or node is None:
        raise ConfigError(missing)
    try:
        return factory(kv, str(node), **options)
    except TypeError as exc:
        raise ConfigError(f"kv_transfer.options: {exc}") from exc
