"""ServerOptions: the knobs of the HTTP layer (the engine's own live in SageLLMConfig)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sagellm.engines.model.generation_config import SamplingDefaults


@dataclass(frozen=True, slots=True)
class ServerOptions:
    #: Name /v1/models reports and requests may use; None: the model's own name.
    served_model_name: str | None = None
    #: After SIGTERM, in-flight requests get this long to finish before they are aborted.
    shutdown_grace_s: float = 20.0
    #: Seconds a 429 (waiting queue full) tells the client to wait, in its Retry-After header.
    retry_after_s: int = 1
    #: Clients must present this key (Bearer or x-api-key); None: no authentication.
    api_key: str | None = None
    #: With an api_key, /metrics wants it too (scrapers usually cannot send one, so it is open by default).
    protect_metrics: bool = False
    #: Origins browsers may call the API from (CORS); empty: no CORS headers at all.
    allowed_origins: tuple[str, ...] = ()
    #: What a request that leaves a sampling field out gets (the model's generation_config.json).
    sampling_defaults: SamplingDefaults = field(default_factory=SamplingDefaults)
