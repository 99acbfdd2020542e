"""Peer: llama.cpp through llama-cpp-python's ``Llama``, in this process.

``Llama`` holds one sequence, so requests run one after another (a cohort
of one), as behind llama-cpp-python's own server. Between requests it
keeps the KV of the longest common prefix with the previous prompt, so
follow-up turns of one conversation do get a prefix hit. It reads the
GGUF file itself, with its own quantized kernels -- the file's Q4 weights
stay 4-bit.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sagellm.core.errors import ModelLoadError, NotSupportedError
from sagellm.engines.bench.backends.base import DEFAULT_GENERATION, GenerationOptions, TargetInfo
from sagellm.engines.bench.backends.cohort import CohortBackend, CohortMember
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.tokenizer import Tokenizer

DEFAULT_CONTEXT = 8192
INSTALL_HINT = "pip install llama-cpp-python (builds llama.cpp from source: several minutes)"


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppBackend(CohortBackend):
    def __init__(
        self,
        llama: Any,
        tokenizer: Tokenizer,
        info: TargetInfo,
        generation: GenerationOptions = DEFAULT_GENERATION,
        show_progress: bool = False,
    ) -> None:
        super().__init__(tokenizer, info, 1, generation, tokenizer.eos_token_ids, show_progress)
        self.llama = llama

    @classmethod
    def load(
        cls,
        path: Path,
        tokenizer: Tokenizer,
        model_config: ModelConfig,
        generation: GenerationOptions = DEFAULT_GENERATION,
        show_progress: bool = False,
    ) -> LlamaCppBackend:
        if not llama_cpp_installed():
            raise NotSupportedError(f"the llama.cpp peer needs llama-cpp-python: {INSTALL_HINT}")
        if not path.is_file():
            raise NotSupportedError(f"llama.cpp reads GGUF files only, not the directory {path}")
        import llama_cpp

        context = min(model_config.max_position_embeddings, DEFAULT_CONTEXT)
        threads = torch.get_num_threads()
        try:
            llama = llama_cpp.Llama(
                model_path=str(path), n_ctx=context, n_threads=threads, n_threads_batch=threads, verbose=False
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"llama.cpp cannot load {path}: {exc}") from exc
        info = TargetInfo(
            backend="llama.cpp",
            model=path.name,
            device="cpu",
            dtype="gguf (file's own quantization)",
            max_model_len=context,
            settings={"version": llama_cpp.__version__, "threads": threads, "n_ctx": context},
            model_config=model_config,
        )
        return cls(llama, tokenizer, info, generation, show_progress)

    def _generate(self, cohort: list[CohortMember], now: Callable[[], float]) -> None:
        for member in cohort:
            tokens = self.llama.generate(
                member.prompt,
                temp=self.generation.temperature,
                top_k=0,
                top_p=1.0,
                min_p=0.0,
                repeat_penalty=1.0,
                reset=True,
            )
            for token in tokens:
                self._take_all([member], [token], now())
                if member.done:
                    break
