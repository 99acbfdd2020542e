"""Where a chat template comes from (file, tokenizer_config, --chat-template) and what it may use.

Templates render in the environment transformers uses: loop controls
(``{% break %}``) and ``strftime_now`` (Llama 3.x prints the date) work;
a template that does not compile is a ConfigError when the engine starts.
Models named by Hugging Face id resolve to the local cache's snapshot.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from tiny_hf import bpe_tokenizer

from sagellm.core.errors import ConfigError, ModelLoadError
from sagellm.engines.cli.main import main
from sagellm.engines.model.loader import resolve_model_path
from sagellm.engines.model.tokenizer_loader import load_tokenizer, with_chat_template
from sagellm.engines.tokenizer import Tokenizer

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def tokenizer(model_path: Path) -> Tokenizer:
    return load_tokenizer(model_path)


def _hf_dir(directory: Path, chat_template: object = None, jinja: str | None = None) -> Path:
    bpe_tokenizer(directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    if chat_template is not None:
        config["chat_template"] = chat_template
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    if jinja is not None:
        (directory / "chat_template.jinja").write_text(jinja)
    return directory


def test_chat_template_jinja_wins_over_tokenizer_config(tmp_path: Path) -> None:
    directory = _hf_dir(
        tmp_path, chat_template="CONFIG{{ messages[0].content }}", jinja="FILE{{ messages[0].content }}"
    )
    assert Tokenizer.from_hf_dir(directory).apply_chat_template(HI) == "FILEHi"


def test_the_default_of_named_templates_is_used(tmp_path: Path) -> None:
    named = [{"name": "tool_use", "template": "TOOLS"}, {"name": "default", "template": "DEFAULT{{ messages|length }}"}]
    assert Tokenizer.from_hf_dir(_hf_dir(tmp_path, chat_template=named)).apply_chat_template(HI) == "DEFAULT1"


def test_loop_controls_and_strftime_now_render(tokenizer: Tokenizer) -> None:
    template = (
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
        "|{{ strftime_now('%Y') }}"
    )
    custom = with_chat_template(tokenizer, template)
    two = [*HI, {"role": "assistant", "content": "Hello"}]
    assert custom.apply_chat_template(two) == f"Hi|{datetime.now().year}"


def test_chat_template_from_a_file_or_inline_replaces_the_models(tokenizer: Tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "template.jinja"
    path.write_text("<{{ messages[0].role }}>{{ messages[0].content }}")
    assert with_chat_template(tokenizer, str(path)).apply_chat_template(HI) == "<user>Hi"
    assert with_chat_template(tokenizer, "[{{ messages[0].content }}]").apply_chat_template(HI) == "[Hi]"
    assert with_chat_template(tokenizer, None) is tokenizer


@pytest.mark.parametrize(
    ("template", "match"),
    [("no-such-template.jinja", "no such file"), ("{% for m in messages %}{{ m }}", "does not compile")],
)
def test_a_bad_chat_template_is_a_config_error(tokenizer: Tokenizer, template: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        with_chat_template(tokenizer, template)


def test_cli_refuses_a_bad_chat_template(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--chat-template", "{% if %}", "--max-tokens", "1", "Hi"]) == 2
    assert "does not compile" in capsys.readouterr().err


def test_a_hugging_face_id_resolves_to_its_cached_snapshot(
    tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someorg--smol-gguf"
    for revision in ("old", "abc123"):
        (repo / "snapshots" / revision).mkdir(parents=True)
        os.symlink(model_path, repo / "snapshots" / revision / "model.gguf")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert resolve_model_path("someorg/smol-gguf") == repo / "snapshots" / "abc123" / "model.gguf"
    assert load_tokenizer("someorg/smol-gguf").vocab_size > 0


def test_an_id_not_in_the_cache_says_how_to_fetch_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="huggingface-cli download nobody/nothing"):
        resolve_model_path("nobody/nothing")
