"""The topics: their one definition (:mod:`.table`), creating them (:mod:`.admin`), their Kubernetes manifests
(:mod:`.manifests`) and the ``voicecall topics`` command (:mod:`.cli`).

Services use ``topics.name(settings, "fee.raw")`` and ``topics.TopicSettings``; tests and tools ``topics.create``.
"""

from voicecall.topics.admin import create
from voicecall.topics.table import (
    DAY_MS,
    SUFFIXES,
    TOPICS,
    PlannedTopic,
    TopicSettings,
    TopicSpec,
    format_plan,
    name,
    plan,
)

__all__ = ["DAY_MS", "SUFFIXES", "TOPICS", "PlannedTopic", "TopicSettings", "TopicSpec", "create", "format_plan",
           "name", "plan"]
