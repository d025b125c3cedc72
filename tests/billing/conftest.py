"""Fixtures of the billing tests: each test gets its own topic prefix on the shared broker."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

# billing_samples and billing_kafka are plain modules next to the tests, whichever import mode pytest uses.
sys.path.insert(0, str(Path(__file__).parent))

from billing_kafka import BillingSettings, settings_for

from voicecall import topics


@pytest.fixture
async def settings(kafka_bootstrap: str) -> BillingSettings:
    result = settings_for(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}.")
    await topics.create(result)
    return result

