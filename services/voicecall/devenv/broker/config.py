"""Settings of ``voicecall broker`` and ``voicecall dev``'s broker on top of the shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from voicecall.runtime import config


class BrokerSettings(config.CommonSettings):
    """``VOICECALL_KAFKA_BOOTSTRAP`` is where the broker listens (its first address's port) or, with
    ``--broker external``, the cluster to use."""

    kafka_lib: Path | None = Field(None, description="where the Apache Kafka jars are kept (default "
                                                     "deploy/dev/kafka/lib of the source tree)")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _addresses(cls, value: str) -> str:
        config.parse_bootstrap(value)  # raises ValueError naming what is wrong
        return value

    @property
    def listen_port(self) -> int:
        return config.parse_bootstrap(self.kafka_bootstrap)[0][1]
