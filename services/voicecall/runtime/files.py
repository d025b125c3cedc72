"""Small file-system helpers shared by the ingress spool and the recordings file store."""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd`` (a write may take less), then fsync."""
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])
    os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or create in ``path`` durable: the directory entry itself must reach the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
