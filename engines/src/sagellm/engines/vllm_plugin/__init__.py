"""sageLLM inside vLLM: a ``vllm.general_plugins`` entry point and a V1 KV connector.

The connector (:class:`~sagellm.engines.vllm_plugin.connector.SageLLMConnector`)
gives vLLM sageLLM's prefix index and the KV pool's host/disk tiers: every
full block vLLM computes is stored below the device, and a prompt whose
prefix vLLM's own cache no longer holds is loaded back from there. Both
come from a :class:`~sagellm.core.config.SageLLMConfig` through the
registry, as in the native engine::

    vllm serve MODEL --kv-transfer-config '{"kv_connector": "SageLLMConnector",
        "kv_connector_module_path": "sagellm.engines.vllm_plugin.connector", "kv_role": "kv_both",
        "kv_connector_extra_config": {"sagellm_config": {"kv_pool": {"tiers": "device,host"}}}}'

With sagellm-engines installed, vLLM's plugin loader calls :func:`register`
in every vLLM process, after which ``"kv_connector": "SageLLMConnector"``
alone is enough. vLLM is imported only there and in ``connector``; this
package imports without it.
"""

from __future__ import annotations

import contextlib
import logging

from sagellm.engines.vllm_plugin.plan import BlockLoad, BlockSave, ScheduledRequest, StepPlan, TierChange, TierSizes
from sagellm.engines.vllm_plugin.scheduler_side import ConnectorStats, SchedulerSide
from sagellm.engines.vllm_plugin.settings import PluginSettings
from sagellm.engines.vllm_plugin.tier_directory import TierDirectory
from sagellm.engines.vllm_plugin.worker_side import TierStore, build_store

CONNECTOR_NAME = "SageLLMConnector"
CONNECTOR_MODULE = "sagellm.engines.vllm_plugin.connector"

log = logging.getLogger(__name__)


def register() -> None:
    """vLLM's ``general_plugins`` hook: make ``SageLLMConnector`` a connector name vLLM knows.

    Runs in every vLLM process (engine core, workers, API server), so it only
    registers a lazy loader: the connector module is imported when a config
    names it. Without vLLM, or when the name is taken already, it does nothing.
    """
    try:
        from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
    except ImportError:
        log.debug("vLLM is not importable: the sageLLM connector is not registered")
        return
    with contextlib.suppress(ValueError):  # registered already: the hook ran twice in this process
        KVConnectorFactory.register_connector(CONNECTOR_NAME, CONNECTOR_MODULE, CONNECTOR_NAME)


__all__ = [
    "CONNECTOR_MODULE",
    "CONNECTOR_NAME",
    "BlockLoad",
    "BlockSave",
    "ConnectorStats",
    "PluginSettings",
    "ScheduledRequest",
    "SchedulerSide",
    "StepPlan",
    "TierChange",
    "TierDirectory",
    "TierSizes",
    "TierStore",
    "build_store",
    "register",
]
