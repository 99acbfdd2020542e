"""Resolve a model reference (None, a .gguf file, a directory) and load it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sagellm.core.errors import ModelLoadError
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.default_model import default_model_path
from sagellm.engines.model.hf_cache import cached_snapshot, looks_like_repo_id
from sagellm.engines.model.q4_weights import Q4Weight


@dataclass(slots=True)
class LoadedCheckpoint:
    path: Path
    format: str  # "gguf" or "safetensors"
    config: ModelConfig
    weights: dict[str, torch.Tensor]
    gguf_metadata: dict[str, Any] = field(default_factory=dict)
    q4_weights: dict[str, Q4Weight] = field(default_factory=dict)  # GGUF Q4_0/Q4_1 tensors as codes


def resolve_model_path(model: str | Path | None) -> Path:
    """None means the embedded default; a directory holding one .gguf means that file; ``ORG/NAME``
    that is not a local path, its snapshot in the local Hugging Face cache."""
    if model is None:
        return default_model_path()
    path = Path(model).expanduser()
    if not path.exists() and isinstance(model, str) and looks_like_repo_id(model):
        path = cached_snapshot(model)
    if not path.exists():
        raise ModelLoadError(f"model path does not exist: {path} (only local files are read)")
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ggufs[0]
        raise ModelLoadError(f"{path} holds neither config.json nor exactly one .gguf file")
    return path


def load_checkpoint(
    model: str | Path | None, dtype: torch.dtype, show_progress: bool | None = None
) -> LoadedCheckpoint:
    path = resolve_model_path(model)
    progress = _progress_bar(path.name) if want_progress(show_progress) else None
    try:
        if path.is_file():
            from sagellm.engines.model.gguf_loader import load_gguf

            ckpt = load_gguf(path, dtype, progress)
            return LoadedCheckpoint(path, "gguf", ckpt.config, ckpt.weights, ckpt.metadata, ckpt.q4_weights)
        from sagellm.engines.model.safetensors_loader import load_safetensors_dir

        config, weights = load_safetensors_dir(path, dtype, progress)
        return LoadedCheckpoint(path, "safetensors", config, weights)
    finally:
        if progress is not None:
            progress(-1, -1)


def want_progress(show_progress: bool | None) -> bool:
    """None: show progress when stderr is a terminal."""
    return sys.stderr.isatty() if show_progress is None else show_progress


def _progress_bar(label: str) -> Callable[[int, int], None]:
    """A tqdm bar driven by (done, total) callbacks; (-1, -1) closes it."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if done < 0:
            if "bar" in bar:
                bar["bar"].close()
            return
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=f"loading {label}", unit="tensor", leave=False)
        bar["bar"].n = done
        bar["bar"].refresh()

    return update
