"""Settings of ``voicecall billing`` (``VOICECALL_*`` variables)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode

from voicecall.billing import tariff
from voicecall.runtime import config
from voicecall.runtime.stage import StageSettings


def _rates(value: Any) -> dict[str, int]:
    return tariff.parse_rates(value)


# NoDecode: pydantic-settings would otherwise insist on JSON and refuse the ``002=18`` form.
Rates = Annotated[dict[str, int], NoDecode, BeforeValidator(_rates)]


class BillingSettings(StageSettings):
    """The shell's settings (batch size and time, timeouts) plus the tariff."""

    billing_tariff: Rates = Field(default_factory=lambda: dict(tariff.DEFAULT_RATES),
                                  description='minor units (fen) per billed minute and leg, per serviceType: '
                                              '002=18,001=18 or {"002": 18, "001": 18}')
    billing_currency: str = Field(tariff.DEFAULT_CURRENCY, pattern=r"^[A-Z]{3}$",
                                  description="ISO 4217 code of the tariff")
    slo_billing_seconds: config.Duration = Field(
        30.0, gt=0, description="push → billing record within this time for first pushes (p99 over 5 minutes): "
                                "exported as voicecall_slo_billing_seconds, the VoicecallBillingLate alert's "
                                "threshold")

    def make_tariff(self) -> tariff.Tariff:
        return tariff.Tariff(self.billing_currency, dict(self.billing_tariff))
