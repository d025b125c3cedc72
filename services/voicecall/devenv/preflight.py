"""Before ``voicecall dev`` starts anything: every service's settings, validated from the current environment.

A bad ``VOICECALL_*`` value stops ``voicecall dev`` at start with the variable's name, instead of a child that fails
again and again behind a "running" banner.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from voicecall.commands import settings_class
from voicecall.runtime import config


def check_service_settings(names: Iterable[str]) -> list[str]:
    """The configuration errors each named command would stop with."""
    problems = []
    for name in names:
        cls = settings_class(name)
        try:
            cls()
        except ValidationError as error:
            problems.append(f"{name}: {config.describe_error(cls, error)}")
    return problems
