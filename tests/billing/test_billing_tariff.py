"""Tariff parsing and charges: integers of minor units, never floats."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from voicecall.billing import tariff
from voicecall.billing.config import BillingSettings
from voicecall.runtime import config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("002=18,001=18", {"002": 18, "001": 18}),
        (" 002 = 20 , 001=15,", {"002": 20, "001": 15}),
        ('{"002": 18, "003": 7}', {"002": 18, "003": 7}),
        ('{"002": 18.0}', {"002": 18}),
        ('{"002": "25"}', {"002": 25}),
        ("", {}),
    ],
)
def test_parse_rates(text: str, expected: dict[str, int]) -> None:
    assert tariff.parse_rates(text) == expected


@pytest.mark.parametrize("text", ["002=0.18", '{"002": 0.18}', "002=-1", "002", "002=abc", '["002"]', "{bad",
                                  "0 02=1", "002=NaN", '{"002": true}'])
def test_parse_rates_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        tariff.parse_rates(text)


def test_float_in_a_mapping_is_refused() -> None:
    with pytest.raises(ValueError, match="float"):
        tariff.parse_rates({"002": 18.0})


def test_defaults_are_the_reference_prices() -> None:
    # 0.18 CNY per minute (per leg for callback) = 18 fen.
    t = tariff.Tariff()
    assert t.currency == "CNY" and dict(t.rates) == {"001": 18, "002": 18}
    # F2: 4 + 4 billed minutes x 18 fen = 144 fen = 1.44 CNY.
    charge = t.charge("002", 8)
    assert charge is not None and charge.amount == 144 and charge.decimal() == "1.44"
    charge = t.charge("001", 1)
    assert charge is not None and charge.amount == 18 and charge.decimal() == "0.18"
    zero = t.charge("001", 0)
    assert zero is not None and zero.amount == 0 and zero.decimal() == "0.00"


def test_no_rate_is_none_not_zero() -> None:
    assert tariff.Tariff().charge("004", 3) is None
    assert tariff.Tariff().charge(None, 3) is None


def test_currency_exponents() -> None:
    assert tariff.Charge("JPY", 5, 150).decimal() == "150"
    assert tariff.Charge("KWD", 5, 1500).decimal() == "1.500"
    assert tariff.Charge("CNY", 18, 7).decimal() == "0.07"


def test_describe_is_canonical() -> None:
    a = tariff.Tariff("CNY", {"002": 18, "001": 20})
    b = tariff.Tariff("CNY", {"001": 20, "002": 18})
    assert a.describe() == b.describe() == "CNY:001=20,002=18"


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1441), min_size=1, max_size=2),
       st.integers(min_value=0, max_value=10**6))
def test_amount_is_exact(minutes: list[int], rate: int) -> None:
    charge = tariff.Tariff("CNY", {"002": rate}).charge("002", sum(minutes))
    assert charge is not None
    assert isinstance(charge.amount, int) and charge.amount == rate * sum(minutes)
    major, _, minor = charge.decimal().partition(".")
    assert int(major) * 100 + int(minor) == charge.amount and len(minor) == 2


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECALL_BILLING_TARIFF", "002=20,001=15")
    monkeypatch.setenv("VOICECALL_BILLING_CURRENCY", "USD")
    made = config.load(BillingSettings).make_tariff()
    assert made.currency == "USD" and dict(made.rates) == {"002": 20, "001": 15}


@pytest.mark.parametrize(("name", "value"), [("VOICECALL_BILLING_TARIFF", "002=0.18"),
                                             ("VOICECALL_BILLING_CURRENCY", "yuan")])
def test_bad_settings_stop_with_the_variable_named(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[Any], name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        config.load(BillingSettings)
    assert stopped.value.code == 2
    assert name in capsys.readouterr().err
