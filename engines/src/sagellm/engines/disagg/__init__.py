"""Disaggregated prefill/decode on one machine: two worker processes, KV over a KV transfer channel.

``DisaggregatedLLM`` is the offline API (``LLM``'s shape); ``PDCoordinator``
the lower-level one the benchmark backend drives; ``handoff`` the KV
bookkeeping on each side. See docs/architecture.md ("Prefill/decode
disaggregation") for the design and engines/README.md for measurements.
"""

from sagellm.engines.disagg.coordinator import PDCoordinator, disagg_config
from sagellm.engines.disagg.disaggregated_llm import DisaggregatedLLM
from sagellm.engines.disagg.worker_error import WorkerError

__all__ = ["DisaggregatedLLM", "PDCoordinator", "WorkerError", "disagg_config"]
