"""Topic names on the command line: a suffix such as ``billing`` (the prefix is added) or a full name."""

from __future__ import annotations

from collections.abc import Collection

from voicecall.runtime.config import CommonSettings
from voicecall.runtime.failures import Refusal
from voicecall.runtime.kafka import make_admin
from voicecall.topics import TOPICS


class UnknownTopic(Refusal):
    """A topic named on the command line that the cluster does not have (the entry point prints it, exit 2)."""


class InternalTopic(Refusal):
    """A copy that would read or write a stage's internal state topic (the entry point prints it, exit 2)."""


def check_copy(source: str, target: str, prefix: str, *, from_internal: bool = False) -> None:
    """Raise :class:`InternalTopic` when ``target`` is internal (writing there breaks the stage that owns it), or
    ``source`` is and ``from_internal`` was not given (its records are state, not events)."""
    if (what := internal(target, prefix)) is not None:
        raise InternalTopic(f"refusing to copy into {target}: it is internal ({what}; only its stage writes it)")
    if not from_internal and (what := internal(source, prefix)) is not None:
        raise InternalTopic(f"refusing to copy from {source}: it is internal ({what}), not events; "
                            f"--from-internal copies it anyway")


def internal(given: str, prefix: str) -> str | None:
    """What the internal topic ``given`` holds — a topic of the table marked internal, named by its suffix, with
    this prefix or another deployment's, or any ``*.changelog`` (the interface's definition of internal) — else
    None."""
    for spec in TOPICS:
        if spec.internal and (given in (spec.suffix, prefix + spec.suffix) or given.endswith("." + spec.suffix)):
            return spec.description
    if given.endswith(".changelog") or given == "changelog":
        return "a stage's state"
    return None


def resolve(given: str, prefix: str, existing: Collection[str]) -> str:
    """The existing topic ``given`` means: the exact name wins, then ``prefix + given``."""
    if given in existing:
        return given
    if prefix + given in existing:
        return prefix + given
    ours = sorted(name for name in existing if name.startswith(prefix))
    hint = ", ".join(ours) if ours else f"none with the prefix {prefix!r} (is VOICECALL_TOPIC_PREFIX right?)"
    raise UnknownTopic(f"no topic {given!r} or {prefix + given!r}; existing: {hint}")


async def partitions(settings: CommonSettings) -> dict[str, list[int]]:
    """Every topic of the cluster with its partition ids (one metadata request)."""
    admin = make_admin(settings)
    try:
        await admin.start()
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described}
