"""Charges: integer minor currency units (fen for CNY) per billed minute and leg, per ``serviceType``.

Defaults follow Huawei's price page (voicecall_price): voice callback 0.18 CNY per minute per leg, voice notification
and verification code 0.18 CNY per minute. Only integers and :class:`~decimal.Decimal` are used — never floats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

DEFAULT_RATES: dict[str, int] = {"001": 18, "002": 18}
DEFAULT_CURRENCY = "CNY"

# ISO 4217 minor-unit exponents of currencies that are not the usual 2.
_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}

_SERVICE_TYPE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def currency_exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def parse_rates(value: Any) -> dict[str, int]:
    """``{"002": 18, "001": 18}`` (JSON text or a mapping) or ``002=18,001=18`` → rates in minor units.

    A rate must be a non-negative integer: ``18.0`` is accepted, ``0.18`` is refused (it reads like a price in
    major units, which would bill a hundredth of the intended amount).
    """
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        text = str(value).strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                loaded = json.loads(text, parse_float=Decimal)
            except json.JSONDecodeError as error:
                raise ValueError(f"not JSON: {error}") from None
            if not isinstance(loaded, dict):
                raise ValueError("the JSON form is an object {serviceType: rate}")
            items = list(loaded.items())
        else:
            items = []
            for part in text.split(","):
                if not part.strip():
                    continue
                key, sep, rate = part.partition("=")
                if not sep:
                    raise ValueError(f"{part.strip()!r} is not serviceType=rate")
                items.append((key, rate))
    rates: dict[str, int] = {}
    for key, raw in items:
        name = str(key).strip()
        if not _SERVICE_TYPE.match(name):
            raise ValueError(f"bad serviceType {name!r}")
        rates[name] = _minor_units(name, raw)
    return rates


def _minor_units(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"rate of {name}: not a number: {raw!r}")
    if isinstance(raw, float):  # only a caller passing a Python mapping gets here; refuse rather than round
        raise ValueError(f"rate of {name}: give an integer of minor units, not a float ({raw!r})")
    try:
        rate = Decimal(str(raw).strip())
    except ArithmeticError:
        raise ValueError(f"rate of {name}: not a number: {raw!r}") from None
    if not rate.is_finite() or rate != rate.to_integral_value() or rate < 0:
        raise ValueError(f"rate of {name}: a non-negative integer of minor units per minute and leg, got {raw!r}")
    return int(rate)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more (hot path)
class Charge:
    currency: str
    rate: int  # minor units per billed minute and leg
    amount: int  # minor units

    def decimal(self) -> str:
        """The amount in major units as an exact decimal string (``72`` fen → ``"0.72"``), by integer division."""
        exponent = currency_exponent(self.currency)
        if exponent == 0:
            return str(self.amount)
        major, minor = divmod(self.amount, 10**exponent)
        return f"{major}.{minor:0{exponent}d}"


@dataclass(frozen=True, slots=True)
class Tariff:
    currency: str = DEFAULT_CURRENCY
    rates: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RATES))

    def charge(self, service_type: str | None, billed_minutes: int) -> Charge | None:
        """The charge for billed minutes summed over the legs (each leg is billed on its own, at the same rate),
        or None when the serviceType has no rate — never a silent zero."""
        rate = self.rates.get(service_type) if service_type is not None else None
        if rate is None:
            return None
        return Charge(self.currency, rate, rate * billed_minutes)

    def describe(self) -> str:
        """Canonical text of the tariff, part of ``ruleVersion`` (``CNY:001=18,002=18``)."""
        return f"{self.currency}:" + ",".join(f"{k}={v}" for k, v in sorted(self.rates.items()))
