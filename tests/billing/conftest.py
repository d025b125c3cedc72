"""Fixtures of the billing tests: each test gets its own topic prefix on the shared broker."""

from __future__ import annotations

import pytest
from billing_helpers import BillingSettings, settings_for

from kafka_helpers import new_prefix
from voicecall import topics


@pytest.fixture
async def settings(kafka_bootstrap: str) -> BillingSettings:
    result = settings_for(kafka_bootstrap, new_prefix())
    await topics.create(result)
    return result
