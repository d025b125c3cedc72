"""The fee-record deduplicator: ``fee.raw`` → ``fee.unique``, exactly once per dedup window."""
