"""The spool's quarantine: spooled records Kafka refuses for good, kept so the drain can go on behind them.

A push is answered ``200`` once it is in the spool, so a record Kafka later refuses for good (too large for a limit
lowered since, an invalid record, no authorization for its topic) or a spool entry that cannot be read must not be
lost, nor block every entry behind it. Each is appended to ``<spool>/quarantine/quarantine.seg``, in the spool's own
entry format and fsync'd, before the drainer goes on; a deadletter record says so (reason ``too-large`` or
``undeliverable``), ``voicecall_ingress_spool_quarantine_records`` counts them and an alert fires. Once the cause is
fixed, the file moved into the spool directory as the first segment is drained like any other.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from voicecall.runtime.files import fsync_dir, write_all

NAME = "quarantine.seg"


class Quarantine:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / NAME
        self.records = 0  # entries in the file (counted by the spool at open)

    def count(self) -> int:
        """Records waiting for a human: 0 once the file has been moved away (which is how a human clears it)."""
        if self.records and not self.path.exists():
            self.records = 0
        return self.records

    async def add(self, entry: bytes) -> None:
        """Append one framed entry (``spool.encode_entry`` or ``spool.frame``) durably."""
        await asyncio.to_thread(self._append, entry)
        self.records += 1

    def _append(self, entry: bytes) -> None:
        new_directory, new_file = not self.directory.exists(), not self.path.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            write_all(fd, entry)
        finally:
            os.close(fd)
        if new_file:
            fsync_dir(self.directory)
        if new_directory:
            fsync_dir(self.directory.parent)
