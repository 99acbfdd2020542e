"""One configuration model with a section per module.

Values come, highest priority first, from keyword arguments, environment
variables (``SAGELLM__KV_POOL__BLOCK_SIZE=32``), a YAML file, and defaults.
Every section names the ``implementation`` the registry should build, plus
its own typed options; unknown keys are rejected so typos surface at once.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from sagellm.core.errors import ConfigError
from sagellm.core.yaml_scalars import load_yaml

_yaml_path: ContextVar[Path | None] = ContextVar("sagellm_config_yaml", default=None)


class Section(BaseModel):
    """Common shape: which implementation, plus free-form extra options."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    implementation: str = "default"
    options: dict[str, Any] = Field(default_factory=dict)


class ModelSection(Section):
    implementation: str = "llama"
    path: str | None = None  # None: the embedded SmolLM2-135M-Instruct GGUF
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"  # "auto" picks cuda when available, else cpu
    max_model_len: int | None = Field(default=None, ge=16)
    num_threads: int | None = Field(default=None, ge=1)
    # Keep a GGUF's quantized weights for low-bit kernels (Q4_0/Q4_1 through torch's 4-bit kernel in bf16/fp16,
    # GGML blocks otherwise); False: every weight dequantized to a dense tensor.
    low_bit_matmul: bool = True
    # What GGUF weights kept as GGML blocks (K-quants, Q5_0, Q8_0; Q4_0/Q4_1 in float32) multiply with at
    # small batches: "int8", activations quantized per 32 as llama.cpp does (1.4-1.7x faster per matmul, ~0.5 %
    # relative error per matmul; perplexity held to llama.cpp's), or "float32", exact to float rounding (the
    # dense model's results, transformers' within its noise: what the token-exact tests run).
    ggml_activations: Literal["float32", "int8"] = "int8"
    # A Jinja chat template (or a path to one) used instead of the model's own; None: the model's.
    chat_template: str | None = None
    # RoPE scaling replacing the model's own, as config.json spells it (vLLM's --rope-scaling), e.g.
    # {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}; None: the model's.
    rope_scaling: dict[str, Any] | None = None


KV_TIERS = ("device", "host", "disk")  # the values of kv_pool.tiers, fastest first


class KVPoolSection(Section):
    implementation: str = "paged"
    block_size: int = Field(default=16, ge=1, le=1024)
    num_blocks: int | None = Field(default=None, ge=2)
    memory_gb: float = Field(default=1.0, gt=0)  # used when num_blocks is None
    cache_dtype: Literal["auto", "float32", "bfloat16", "float16", "int8"] = "auto"  # int8: codes + per-block scales
    # Storage tiers, fastest first: "device", optionally with "host" (RAM, pinned on CUDA) and "disk" (mmap files).
    # Lower tiers take swapped-out sequences (host) and demoted prefix-cache blocks (host, then disk).
    tiers: str = "device"
    host_num_blocks: int | None = Field(default=None, ge=1)
    host_memory_gb: float = Field(default=4.0, gt=0)  # used when host_num_blocks is None
    disk_num_blocks: int | None = Field(default=None, ge=1)
    disk_memory_gb: float = Field(default=16.0, gt=0)  # used when disk_num_blocks is None
    disk_dir: str | None = None  # parent of the disk tier's own directory; None: the system temp dir

    @field_validator("tiers", mode="before")
    @classmethod
    def _normalise_tiers(cls, value: Any) -> Any:
        """Accept "device,host", " device , host " or a YAML list; store the canonical "device,host"."""
        if isinstance(value, (list, tuple)):
            value = ",".join(str(part) for part in value)
        if not isinstance(value, str):
            return value
        names = [part.strip().lower() for part in value.split(",") if part.strip()]
        unknown = [name for name in names if name not in KV_TIERS]
        if unknown:
            raise ValueError(f"unknown tier(s) {unknown}; choose from {', '.join(KV_TIERS)}")
        if len(set(names)) != len(names) or "device" not in names:
            raise ValueError("list each tier once, device included (e.g. device,host,disk)")
        return ",".join(sorted(names, key=KV_TIERS.index))

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(self.tiers.split(","))


class PrefixCacheSection(Section):
    implementation: str = "hash_chain"
    enabled: bool = True


class EvictionPolicySection(Section):
    implementation: str = "lru"


class SchedulerSection(Section):
    implementation: str = "fifo"
    max_num_seqs: int = Field(default=64, ge=1)
    max_num_batched_tokens: int = Field(default=512, ge=16)
    enable_chunked_prefill: bool = True
    max_waiting: int = Field(default=1024, ge=1)


class LifetimePredictorSection(Section):
    implementation: str = "none"


class TopologySection(Section):
    implementation: str = "none"


class CollectiveOpsSection(Section):
    implementation: str = "none"
    # Ranks the engine runs its model on (vLLM's --tensor-parallel-size); above 1, one process per rank.
    world_size: int = Field(default=1, ge=1)
    # torch.distributed-style rendezvous (tcp://HOST:PORT); None: a free port on 127.0.0.1.
    init_method: str | None = None
    # A rank that never joins, or stops answering inside a collective, fails after this long.
    timeout_s: float = Field(default=60.0, gt=0)
    # Ranks started on other hosts (``sagellm tp-worker``) that dial rank 0 at worker_listen (HOST:PORT)
    # instead of being spawned by it; the token they must present comes from $SAGELLM_WORKER_TOKEN.
    remote_ranks: list[int] = Field(default_factory=list)
    worker_listen: str | None = None


class KVTransferSection(Section):
    implementation: str = "none"


class OverlapPipelineSection(Section):
    implementation: str = "none"


class DomesticInterconnectSection(Section):
    implementation: str = "none"


class QuantizationSection(Section):
    implementation: str = "none"
    # Engines: quantize the LM head along with the decoder's linears (False keeps it dense).
    lm_head: bool = True


class SparsitySection(Section):
    implementation: str = "none"


class SpeculativeDecodingSection(Section):
    implementation: str = "none"
    num_speculative_tokens: int = Field(default=4, ge=1)


class KernelFusionSection(Section):
    # "auto": the engine uses the installed "cpu" kernel set on CPU when it exists; "none": never.
    implementation: str = "auto"


class CoTAccelerationSection(Section):
    implementation: str = "none"


class ServerSection(Section):
    implementation: str = "openai"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)


class SageLLMConfig(BaseSettings):
    """The whole engine's configuration; build it with :func:`load_config`."""

    model_config = SettingsConfigDict(
        env_prefix="SAGELLM__",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    model: ModelSection = Field(default_factory=ModelSection)
    kv_pool: KVPoolSection = Field(default_factory=KVPoolSection)
    prefix_cache: PrefixCacheSection = Field(default_factory=PrefixCacheSection)
    eviction_policy: EvictionPolicySection = Field(default_factory=EvictionPolicySection)
    scheduler_ir: SchedulerSection = Field(default_factory=SchedulerSection)
    lifetime_predictor: LifetimePredictorSection = Field(default_factory=LifetimePredictorSection)
    topology: TopologySection = Field(default_factory=TopologySection)
    collective_ops: CollectiveOpsSection = Field(default_factory=CollectiveOpsSection)
    kv_transfer: KVTransferSection = Field(default_factory=KVTransferSection)
    overlap_pipeline: OverlapPipelineSection = Field(default_factory=OverlapPipelineSection)
    domestic_interconnect: DomesticInterconnectSection = Field(default_factory=DomesticInterconnectSection)
    quantization: QuantizationSection = Field(default_factory=QuantizationSection)
    sparsity: SparsitySection = Field(default_factory=SparsitySection)
    speculative_decoding: SpeculativeDecodingSection = Field(default_factory=SpeculativeDecodingSection)
    kernel_fusion: KernelFusionSection = Field(default_factory=KernelFusionSection)
    cot_acceleration: CoTAccelerationSection = Field(default_factory=CoTAccelerationSection)
    server: ServerSection = Field(default_factory=ServerSection)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments beat the environment, which beats the YAML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = _yaml_path.get()
        if yaml_path is not None:
            sources.append(ConfigYamlSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)


class ConfigYamlSource(YamlConfigSettingsSource):
    """The YAML file, read without base-60 numbers (``pattern: 2:4`` is a string; see :mod:`.yaml_scalars`)."""

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        with file_path.open(encoding=self.yaml_file_encoding) as yaml_file:
            # Not a mapping (a YAML list, say) fails in pydantic-settings, reported as a ConfigError by load_config.
            return cast(dict[str, Any], load_yaml(yaml_file) or {})


def load_config(yaml_file: str | Path | None = None, **overrides: Any) -> SageLLMConfig:
    """Build the configuration, turning validation failures into :class:`ConfigError`.

    ``overrides`` are section dicts, e.g. ``load_config(kv_pool={"block_size": 32})``.
    """
    path = Path(yaml_file) if yaml_file is not None else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    _reject_unknown_env_sections()
    token = _yaml_path.set(path)
    try:
        return SageLLMConfig(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except (ValueError, TypeError, yaml.YAMLError) as exc:  # YAML syntax, a YAML list instead of a mapping, bad JSON
        raise ConfigError(f"cannot read configuration: {exc}") from None
    finally:
        _yaml_path.reset(token)


def _reject_unknown_env_sections() -> None:
    """Fail on ``SAGELLM__<SECTION>`` variables naming no section.

    pydantic-settings silently skips environment variables that match no
    field, so ``SAGELLM__KVPOOL__BLOCK_SIZE`` would be ignored; unknown keys
    *inside* a known section are already rejected by ``extra="forbid"``.
    """
    prefix = "SAGELLM__"
    sections = set(SageLLMConfig.model_fields)
    for name in os.environ:
        if name.upper().startswith(prefix):
            section = name[len(prefix) :].split("__", 1)[0].lower()
            if section not in sections:
                raise ConfigError(f"environment variable {name}: unknown config section '{section}'")


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: the dotted field, what was expected, what was given."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "<root>"
        given = err.get("input")
        lines.append(f"{field}: {err['msg']} (got {given!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)
