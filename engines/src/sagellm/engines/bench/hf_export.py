"""Write a GGUF model as a Hugging Face directory (bf16 safetensors + tokenizer), for peers that need one.

vLLM reads Hugging Face directories, not GGUF files. transformers
dequantizes the GGUF; the directory then holds the same weights sageLLM
and llama.cpp run (their 4-bit copies aside), so all peers serve one model.
Written once per GGUF under the peers' cache and reused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sagellm.core.errors import NotSupportedError


def export_hf_dir(gguf: Path, cache_root: Path) -> Path:
    """The Hugging Face directory for ``gguf`` under ``cache_root`` (written on first use)."""
    digest = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    dest = cache_root / f"{gguf.stem}-hf-{digest}"
    if (dest / "config.json").is_file():
        return dest
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise NotSupportedError(
            "writing a Hugging Face directory needs transformers: pip install transformers"
        ) from None
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    # A model loaded from GGUF refuses save_pretrained ("quantized with gguf"): copy it into a plain one.
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict())
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # vLLM reads even a null one as a quantization method
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    partial = dest.with_name(dest.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(dest)
    return dest
