"""Object keys of stored recordings: ``YYYY/MM/DD/<sessionId-derived name>.<ext>``.

Every part comes from sanitised values. ``recordObjectName`` is platform data and may be anything (``../../x``,
absolute paths, NULs); it only contributes its extension, and only when that is a known audio extension.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
AUDIO_EXTENSIONS = frozenset({"wav", "mp3", "amr", "ogg", "opus", "m4a", "aac", "flac"})
MAX_NAME = 120


def safe_name(session_id: str) -> str:
    """A file name from a sessionId: safe characters only, no leading dot, length-capped, plus a short hash of the
    exact sessionId so two ids that sanitise alike never share a key."""
    cleaned = _UNSAFE.sub("_", session_id).strip("._-")[:MAX_NAME] or "session"
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{cleaned}-{digest}"


def extension(record_object_name: object) -> str:
    if isinstance(record_object_name, str) and "." in record_object_name:
        ext = record_object_name.rsplit(".", 1)[1].lower()
        if ext in AUDIO_EXTENSIONS:
            return ext
    return "wav"  # the platform records A-law .wav (Huawei VoiceCall product specifications)


def object_key(session_id: str, call_end: datetime, record_object_name: object) -> str:
    return f"{call_end:%Y/%m/%d}/{safe_name(session_id)}.{extension(record_object_name)}"
