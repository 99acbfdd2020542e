"""The engine's tokenizer: encode, decode, special ids and the chat template."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as FastTokenizer

from sagellm.core.errors import ModelLoadError
from sagellm.engines.tokenizer.chat_template import render_chat


@dataclass
class Tokenizer:
    backend: FastTokenizer
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None
    add_bos_token: bool = False
    chat_template: str | None = None
    special_tokens: dict[str, str] = field(default_factory=dict)  # bos_token, eos_token for templates

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = list(self.backend.encode(text, add_special_tokens=False).ids)
        wants_bos = add_special_tokens and self.add_bos_token and self.bos_token_id is not None
        if wants_bos and (not ids or ids[0] != self.bos_token_id):
            ids.insert(0, self.bos_token_id)  # type: ignore[arg-type]
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        return render_chat(self.chat_template, messages, add_generation_prompt, **self.special_tokens)

    def encode_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        """Template text already carries BOS where the model wants it."""
        return self.encode(self.apply_chat_template(messages, add_generation_prompt), add_special_tokens=False)

    @classmethod
    def from_gguf_metadata(cls, metadata: dict[str, Any], path: Path) -> Tokenizer:
        from sagellm.engines.tokenizer.gguf_tokenizer import byte_level_bpe_from_gguf, hf_converted_from_gguf

        kind = metadata.get("tokenizer.ggml.model")
        backend = byte_level_bpe_from_gguf(metadata) if kind == "gpt2" else hf_converted_from_gguf(str(path))
        tokens = metadata.get("tokenizer.ggml.tokens") or []
        bos = _opt_int(metadata.get("tokenizer.ggml.bos_token_id"))
        eos = _opt_int(metadata.get("tokenizer.ggml.eos_token_id"))
        eos_ids = _chat_end_tokens(backend, (eos,) if eos is not None else ())
        return cls(
            backend=backend,
            eos_token_ids=eos_ids,
            bos_token_id=bos,
            add_bos_token=bool(metadata.get("tokenizer.ggml.add_bos_token", False)),
            chat_template=metadata.get("tokenizer.chat_template"),
            special_tokens={
                "bos_token": tokens[bos] if bos is not None and bos < len(tokens) else "",
                "eos_token": tokens[eos] if eos is not None and eos < len(tokens) else "",
            },
        )

    @classmethod
    def from_hf_dir(cls, directory: Path, eos_token_ids: Sequence[int] = ()) -> Tokenizer:
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise ModelLoadError(f"{directory} has no tokenizer.json")
        backend = FastTokenizer.from_file(str(path))
        config = _read_json(directory / "tokenizer_config.json")
        bos_token = _token_text(config.get("bos_token"))
        eos_token = _token_text(config.get("eos_token"))
        eos_ids = list(eos_token_ids)
        if eos_token and backend.token_to_id(eos_token) is not None:
            eos_ids.append(int(backend.token_to_id(eos_token)))
        bos_id = backend.token_to_id(bos_token) if bos_token else None
        return cls(
            backend=backend,
            eos_token_ids=_chat_end_tokens(backend, tuple(dict.fromkeys(eos_ids))),
            bos_token_id=bos_id,
            add_bos_token=bool(config.get("add_bos_token", False)),
            chat_template=hf_chat_template(directory, config),
            special_tokens={"bos_token": bos_token or "", "eos_token": eos_token or ""},
        )


def hf_chat_template(directory: Path, tokenizer_config: dict[str, Any]) -> str | None:
    """The directory's chat template: ``chat_template.jinja`` (what transformers writes now), else
    tokenizer_config.json's, whose list form names its templates (the one called "default" is used)."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _chat_end_tokens(backend: FastTokenizer, eos_ids: tuple[int, ...]) -> tuple[int, ...]:
    """Chat models end a turn with a marker that is often not the file's EOS id.

    SmolLM2's GGUF names ``<|endoftext|>`` as EOS but ends replies with
    ``<|im_end|>``; stopping only at EOS would run past the answer (Gemma: ``<end_of_turn>``).
    """
    extra = [backend.token_to_id(t) for t in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")]
    return tuple(dict.fromkeys([*eos_ids, *(int(i) for i in extra if i is not None)]))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("content"))
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot parse {path}: {exc}") from None
    return data
