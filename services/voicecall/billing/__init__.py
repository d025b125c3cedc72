"""``voicecall billing``: fee.unique → billing, durations and billed minutes per leg, exactly once."""
