"""``ORG/NAME`` as a model reference: the snapshot already in the local Hugging Face cache.

sageLLM reads only local files (servers often run offline), so an id is
looked up where ``huggingface-cli download`` / ``transformers`` put it:
``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``,
at the revision ``refs/main`` names (else the newest snapshot).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sagellm.core.errors import ModelLoadError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_repo_id(reference: str) -> bool:
    return bool(REPO_ID.match(reference)) and not reference.startswith((".", "/", "~"))


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def cached_snapshot(repo_id: str) -> Path:
    """The snapshot directory of ``repo_id``; ModelLoadError saying how to fetch it when it is not cached."""
    cache = hub_cache_dir()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshots = repo / "snapshots"
    if not snapshots.is_dir() or not any(snapshots.iterdir()):
        raise ModelLoadError(
            f"{repo_id} is neither a local path nor in the Hugging Face cache ({cache}); sageLLM reads only "
            f"local files: fetch it first with `huggingface-cli download {repo_id}`"
        )
    ref = repo / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    return max(snapshots.iterdir(), key=lambda p: p.stat().st_mtime)
