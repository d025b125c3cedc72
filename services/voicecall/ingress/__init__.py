"""``voicecall ingress``: the HTTP ingress for status and fee pushes (parse → Kafka, or the local spool)."""
