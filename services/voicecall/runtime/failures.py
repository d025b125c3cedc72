"""Refusals: a process that cannot run as configured says so in one line and exits 2, never with a traceback.

Anything that finds such a problem (a taken port, a broker that cannot be reached, a bad setting found after
loading) raises :class:`Refusal`; ``voicecall``'s entry point prints ``voicecall <command>: <line>`` to stderr and
exits with :data:`EXIT_USAGE`. The line names the variable or flag to change and what to do.
"""

from __future__ import annotations

import errno

from aiokafka.errors import KafkaConnectionError

EXIT_USAGE = 2  # a bad setting, argument or environment: starting again unchanged cannot help


class Refusal(Exception):
    """One line for the operator: what is wrong, the variable or flag to change, the remedy."""

    def __str__(self) -> str:  # the line alone (aiokafka's errors would prefix their class name)
        return str(self.args[0]) if self.args else ""


class BrokerUnreachable(Refusal, KafkaConnectionError):  # type: ignore[misc]  # a KafkaError to code catching those
    def __init__(self, bootstrap: str, reason: str) -> None:
        self.bootstrap = bootstrap
        self.reason = reason
        super().__init__(f"cannot reach Kafka at {bootstrap} ({reason}); start the broker (`make run`, or "
                         "`voicecall broker`) or point VOICECALL_KAFKA_BOOTSTRAP or --bootstrap at a running one")


class CredentialsRefused(Refusal, KafkaConnectionError):  # type: ignore[misc]
    """The broker answered, and refused who we said we are: retrying with the same settings cannot help."""

    def __init__(self, bootstrap: str, reason: str) -> None:
        self.bootstrap = bootstrap
        self.reason = reason
        super().__init__(f"Kafka at {bootstrap} refused the credentials ({reason}); check "
                         "VOICECALL_KAFKA_SASL_USERNAME, VOICECALL_KAFKA_SASL_PASSWORD and "
                         "VOICECALL_KAFKA_SASL_MECHANISM")


def port_refusal(host: str, port: int, error: OSError, variable: str, flag: str | None = None) -> Refusal:
    """A server that could not listen on ``host:port``; ``variable`` (and ``flag``) chose the port."""
    setting = f"{variable} or {flag}" if flag else variable
    if error.errno == errno.EADDRINUSE:
        problem, remedy = "is already in use", f"stop what listens there or set another port ({setting})"
    elif error.errno == errno.EACCES:
        problem, remedy = "needs privileges this process lacks", f"set a port above 1023 ({setting})"
    else:
        problem, remedy = f"cannot be listened on ({error.strerror or error})", f"check the address ({setting})"
    return Refusal(f"{variable}={port}: {host}:{port} {problem}; {remedy}")
