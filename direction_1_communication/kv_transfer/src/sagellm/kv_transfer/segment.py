"""Shared-memory segments: a file under ``/dev/shm`` that two processes map.

Why not :class:`multiprocessing.shared_memory.SharedMemory`: before Python
3.13 *attaching* to a segment registers it with the resource tracker too,
which then unlinks the sender's segment when the receiver exits; and its
``buf`` cannot be closed while a tensor still views it. A plain file mapped
by ``torch.from_file(shared=True)`` has neither problem: the mapping lives
exactly as long as the tensor, and only the creating process unlinks.

Leaks are prevented three ways: :meth:`Segment.close` unlinks; a
``weakref.finalize`` unlinks at garbage collection and at interpreter exit;
and :func:`sweep_stale` removes segments whose creating process is gone
(a ``kill -9``), which every new segment runs first.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import weakref
from pathlib import Path

import torch

from sagellm.kv_transfer.errors import PeerClosedError

PREFIX = "sagellm-kv-"
NAME_RE = re.compile(rf"{PREFIX}(\d+)-[0-9a-f]{{12}}")


def shm_dir() -> Path:
    """Where segments live: the RAM-backed ``/dev/shm`` on Linux, else the temp directory."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


class Segment:
    """A named run of shared bytes viewed as one flat ``uint8`` tensor."""

    def __init__(self, name: str, data: torch.Tensor, path: Path, owner: bool) -> None:
        self.name = name
        self.path = path
        self.owner = owner
        self.data: torch.Tensor | None = data
        # Owners unlink at close, at garbage collection and at exit, whichever comes first.
        self._finalizer = weakref.finalize(self, _unlink, path) if owner else None

    @classmethod
    def create(cls, nbytes: int) -> Segment:
        sweep_stale()
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        path = shm_dir() / name
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, nbytes)
        finally:
            os.close(fd)
        try:
            data = torch.from_file(str(path), shared=True, size=nbytes, dtype=torch.uint8)
        except BaseException:
            _unlink(path)
            raise
        return cls(name, data, path, owner=True)

    @classmethod
    def attach(cls, name: str) -> Segment:
        """Map a segment another process created; PeerClosedError if it is gone (or the name is not ours)."""
        if not NAME_RE.fullmatch(name):  # names arrive over a socket: never let one walk out of the directory
            raise PeerClosedError(f"not a sagellm KV staging segment: {name!r}")
        path = shm_dir() / name
        try:
            size = path.stat().st_size
            data = torch.from_file(str(path), shared=True, size=size, dtype=torch.uint8)
        except (FileNotFoundError, RuntimeError) as exc:
            raise PeerClosedError(f"staging segment {name} is gone: its sender closed") from exc
        return cls(name, data, path, owner=False)

    @property
    def nbytes(self) -> int:
        return 0 if self.data is None else self.data.numel()

    def close(self) -> None:
        """Drop this process's mapping (views taken from ``data`` keep theirs); the owner also unlinks."""
        self.data = None
        if self._finalizer is not None:
            self._finalizer()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def sweep_stale() -> list[str]:
    """Unlink segments whose creating process no longer exists; returns their names."""
    removed: list[str] = []
    directory = shm_dir()
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    for path in candidates:
        match = NAME_RE.fullmatch(path.name)
        if match is None or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if path.stat().st_uid == os.getuid():
                path.unlink()
                removed.append(path.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def live_segments() -> list[str]:
    """Names of the segments this process created and has not unlinked yet (for leak tests)."""
    prefix = f"{PREFIX}{os.getpid()}-"
    return sorted(p.name for p in shm_dir().iterdir() if p.name.startswith(prefix))
