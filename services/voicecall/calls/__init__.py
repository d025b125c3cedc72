"""``voicecall calls``: one always-current record per call (status.raw, fee.unique, billing, recording.* → calls)."""
