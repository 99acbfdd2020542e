"""Peer: Hugging Face transformers ``generate`` in this process, in static cohorts.

The same model file (a GGUF is dequantized by transformers itself), the
same token ids, the same thread count. Cohorts are left-padded to one
length, as a batch for ``generate`` must be; a per-row stopping criterion
stamps each new token and ends a row at its own ``max_tokens`` (the rows
around it keep computing until the longest is done -- what static batching
costs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sagellm.core.errors import ModelLoadError, NotSupportedError
from sagellm.engines.bench.backends.base import DEFAULT_GENERATION, GenerationOptions, TargetInfo
from sagellm.engines.bench.backends.cohort import CohortBackend, CohortMember
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.tokenizer import Tokenizer

HF_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PEER_NAMES = {"float32": "transformers", "bfloat16": "transformers-bf16"}  # fp32: transformers' default
DEFAULT_MAX_BATCH = 64
INSTALL_HINT = "pip install 'sagellm-engines[compare]' -c constraints.txt (transformers, accelerate, gguf)"


def load_hf_model(path: Path, dtype: torch.dtype) -> Any:
    """transformers' own loader: a GGUF file (dequantized) or a Hugging Face directory."""
    try:
        from transformers import AutoModelForCausalLM
    except ImportError as exc:
        raise NotSupportedError(f"the transformers peer needs transformers: {INSTALL_HINT}") from exc
    try:
        if path.is_file():
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    except ImportError as exc:  # gguf / accelerate missing
        raise NotSupportedError(f"transformers cannot load {path.name}: {exc}; {INSTALL_HINT}") from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"transformers cannot load {path}: {exc}") from exc
    return model.eval()


class TransformersBackend(CohortBackend):
    def __init__(
        self,
        model: Any,
        tokenizer: Tokenizer,
        info: TargetInfo,
        max_batch: int = DEFAULT_MAX_BATCH,
        generation: GenerationOptions = DEFAULT_GENERATION,
        pad_token_id: int = 0,
        show_progress: bool = False,
    ) -> None:
        super().__init__(tokenizer, info, max_batch, generation, tokenizer.eos_token_ids, show_progress)
        self.model = model
        self.pad_token_id = pad_token_id

    @classmethod
    def load(
        cls,
        path: Path,
        tokenizer: Tokenizer,
        model_config: ModelConfig,
        dtype: str = "float32",
        max_batch: int = DEFAULT_MAX_BATCH,
        generation: GenerationOptions = DEFAULT_GENERATION,
        show_progress: bool = False,
    ) -> TransformersBackend:
        import transformers

        model = load_hf_model(path, HF_DTYPES[dtype])
        info = TargetInfo(
            backend=PEER_NAMES[dtype],
            model=path.name,
            device="cpu",
            dtype=dtype,
            max_model_len=model_config.max_position_embeddings,
            settings={"version": transformers.__version__, "threads": torch.get_num_threads(), "max_batch": max_batch},
            model_config=model_config,
        )
        pad = tokenizer.eos_token_ids[0] if tokenizer.eos_token_ids else 0
        return cls(model, tokenizer, info, max_batch, generation, pad, show_progress)

    def _generate(self, cohort: list[CohortMember], now: Callable[[], float]) -> None:
        from transformers import StoppingCriteria, StoppingCriteriaList

        backend = self

        class StampTokens(StoppingCriteria):  # type: ignore[misc]
            """Called after every step with the grown ids: its last column is the new token of each row."""

            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> torch.Tensor:
                backend._take_all(cohort, input_ids[:, -1].tolist(), now())
                return torch.tensor([m.done for m in cohort], dtype=torch.bool, device=input_ids.device)

        ids, mask = self._left_padded(cohort)
        longest = max(m.max_tokens for m in cohort)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.generation.temperature, "top_k": 0}
            if self.generation.temperature > 0
            else {"do_sample": False}
        )
        with torch.inference_mode():
            self.model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=longest,
                min_new_tokens=longest if self.generation.ignore_eos else 0,
                pad_token_id=self.pad_token_id,
                stopping_criteria=StoppingCriteriaList([StampTokens()]),
                **sampling,
            )

    def _left_padded(self, cohort: list[CohortMember]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(m.prompt) for m in cohort)
        ids = torch.full((len(cohort), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(cohort), width), dtype=torch.long)
        for row, member in enumerate(cohort):
            ids[row, width - len(member.prompt) :] = torch.tensor(member.prompt)
            mask[row, width - len(member.prompt) :] = 1
        return ids, mask
