"""Read files of a sysfs/procfs tree under a root, so tests can point at a fake tree.

Every read is one ``open``; missing files and files the kernel refuses to
read (``speed`` of a link that is down raises EINVAL) come back as None:
detection reports what it can and never fails on one odd attribute.
"""

from __future__ import annotations

import os


class SysfsReader:
    """Paths are absolute as on a live system (``/sys/...``) and re-rooted under ``root``."""

    __slots__ = ("_prefix", "root")

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self._prefix = root.rstrip("/")  # "" for the live system: paths are used as given

    def path(self, path: str) -> str:
        return path if self._prefix == "" else self._prefix + path

    def read(self, path: str) -> str | None:
        """The file's text, stripped; None when absent or unreadable.

        ``os.open``/``os.read`` rather than ``open()``: no buffered text
        wrapper per file, which halves the cost of the ~1,000 reads a large
        machine needs.
        """
        try:
            fd = os.open(self.path(path), os.O_RDONLY)
        except OSError:
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)
        return b"".join(chunks).decode("utf-8", "replace").strip()

    def read_int(self, path: str, base: int = 10) -> int | None:
        text = self.read(path)
        if text is None:
            return None
        try:
            return int(text, base)
        except ValueError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(self.path(path))

    def listdir(self, path: str) -> list[str]:
        """Sorted entries; [] when the directory is absent."""
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    def resolve(self, path: str) -> str:
        """Where a symlink chain leads, as a path relative to the root (``/sys/devices/...``)."""
        real = os.path.realpath(self.path(path))
        if self.root == "/":
            return real
        root = os.path.realpath(self.root)
        return "/" + os.path.relpath(real, root) if real.startswith(root) else real
