"""The sampling defaults a model ships (``generation_config.json``), used where a request names none.

Instruct models are tuned for a temperature and top-p; a request that
leaves them out should get those, not the API's neutral 1.0 (vLLM's
``--generation-config auto`` does the same). GGUF files carry no sampling
settings, so they get the API defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sagellm.core.errors import ConfigError, ModelLoadError
from sagellm.engines.model.loader import resolve_model_path

FILE = "generation_config.json"


@dataclass(frozen=True, slots=True)
class SamplingDefaults:
    """Per-field defaults; None: the API's own default for that field."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    max_tokens: int | None = None

    def describe(self) -> str:
        fields = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        return ", ".join(f"{name}={value}" for name, value in fields.items() if value is not None) or "none"


def load_sampling_defaults(model: str | Path | None, source: str = "auto") -> SamplingDefaults:
    """``source``: ``auto`` (the model directory's generation_config.json), ``none``, or a folder holding one."""
    if source == "none":
        return SamplingDefaults()
    if source == "auto":
        path = resolve_model_path(model)
        return _read(path / FILE) if path.is_dir() else SamplingDefaults()
    folder = Path(source).expanduser()
    if not (folder / FILE).is_file():
        raise ConfigError(f"--generation-config {source!r}: no {FILE} there (or use auto / none)")
    return _read(folder / FILE)


def _read(path: Path) -> SamplingDefaults:
    if not path.is_file():
        return SamplingDefaults()
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot parse {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    max_new = data.get("max_new_tokens")
    return SamplingDefaults(
        temperature=_number(data, "temperature"),
        top_p=_number(data, "top_p"),
        top_k=int(data["top_k"]) if isinstance(data.get("top_k"), int) and data["top_k"] > 0 else None,
        min_p=_number(data, "min_p"),
        repetition_penalty=_number(data, "repetition_penalty"),
        max_tokens=int(max_new) if isinstance(max_new, int) and max_new > 0 else None,
    )


def _number(data: dict[str, object], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
