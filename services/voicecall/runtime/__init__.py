"""The shared runtime: configuration, logging, metrics, Kafka clients, CloudEvents and shutdown."""
