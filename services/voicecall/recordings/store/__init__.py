"""Where recordings go: one small interface (``base``), a filesystem store (``files``) and an S3-compatible store
(``s3``), chosen by the store's URI."""

from __future__ import annotations

from pathlib import Path

from voicecall.recordings.store.base import Store, Stored, Writer
from voicecall.recordings.store.files import FileStore, file_path
from voicecall.recordings.store.s3 import S3Store

__all__ = ["FileStore", "S3Store", "Store", "Stored", "Writer", "file_path", "open_store"]


async def open_store(uri: str, *, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1",
                     s3_part_size: int = 5 * 1024 * 1024, threads: int = 20) -> Store:
    """``file:///path``, a plain path, or ``s3://bucket/prefix``; ``threads`` ≈ transfers in flight + a few."""
    if uri.startswith("s3://"):
        return await S3Store.open(uri, s3_endpoint_url, s3_region, s3_part_size, threads)
    return FileStore(Path(file_path(uri)), threads)
