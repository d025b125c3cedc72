"""Settings of ``voicecall broker`` and ``voicecall dev``'s broker on top of the shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from voicecall.devenv.ports import port_is_free
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

    def port_problem(self, kind: str) -> str | None:
        """A broker this process is to start (not ``external``) cannot listen where the settings say."""
        if kind == "external" or port_is_free(self.listen_port):
            return None
        return (f"VOICECALL_KAFKA_BOOTSTRAP={self.kafka_bootstrap}: 127.0.0.1:{self.listen_port} is already in use "
                "(the broker would listen there); stop what listens there (a broker left from an earlier run?) or "
                "set another host:port")
