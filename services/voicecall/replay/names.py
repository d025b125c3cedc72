"""Topic names on the command line: a suffix such as ``billing`` (the prefix is added) or a full name."""

from __future__ import annotations

from collections.abc import Collection

from voicecall.runtime.config import CommonSettings
from voicecall.runtime.kafka import make_admin


class UnknownTopic(ValueError):
    pass


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
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described}
