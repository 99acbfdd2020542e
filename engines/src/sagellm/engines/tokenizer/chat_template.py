"""Render a model's Jinja chat template the way transformers does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sagellm.core.errors import ConfigError, InvalidRequestError

# Used when a model ships no template: ChatML, which SmolLM and Qwen use.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise(message: str) -> None:
    raise InvalidRequestError(f"chat template rejected the conversation: {message}")


def _strftime_now(format: str) -> str:
    """Llama 3.x templates print today's date with it (transformers provides it too)."""
    return datetime.now().strftime(format)


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    """The environment transformers renders in: sandboxed, trimmed blocks, loop controls, its helpers."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def resolve_chat_template(value: str) -> str:
    """``--chat-template``: a path to a Jinja file, or the template itself; ConfigError if it does not compile.

    Checked when the engine starts, so a broken template fails there, not
    on the first chat request.
    """
    path = Path(value).expanduser()
    looks_like_jinja = "{{" in value or "{%" in value
    if not looks_like_jinja:
        if not path.is_file():
            raise ConfigError(f"chat template {value!r}: no such file, and not a Jinja template either")
        value = path.read_text()
    from jinja2 import TemplateSyntaxError

    try:
        _compile(value)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"chat template does not compile: {exc.message} (line {exc.lineno})") from None
    return value


def render_chat(
    template: str | None,
    messages: Sequence[dict[str, Any]],
    add_generation_prompt: bool = True,
    **variables: Any,
) -> str:
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise InvalidRequestError(f"messages[{i}] must be an object with 'role' and 'content'")
    compiled = _compile(template or CHATML_TEMPLATE)
    return str(compiled.render(messages=list(messages), add_generation_prompt=add_generation_prompt, **variables))
