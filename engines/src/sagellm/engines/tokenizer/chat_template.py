"""Render a model's Jinja chat template the way transformers does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sagellm.core.errors import InvalidRequestError

# Used when a model ships no template: ChatML, which SmolLM and Qwen use.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise(message: str) -> None:
    raise InvalidRequestError(f"chat template rejected the conversation: {message}")


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    env.globals["raise_exception"] = _raise
    return env.from_string(template)


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
