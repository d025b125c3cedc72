"""The host allowlist and the address checks (pure)."""

from __future__ import annotations

import pytest

from voicecall.recordings import safety
from voicecall.recordings.config import RecordingsSettings
from voicecall.runtime import config


@pytest.mark.parametrize(("host", "patterns", "allowed"), [
    ("rtccall.cn-north-1.myhuaweicloud.cn", ["*.myhuaweicloud.cn"], True),
    ("myhuaweicloud.cn", ["*.myhuaweicloud.cn"], False),
    ("evilmyhuaweicloud.cn", ["*.myhuaweicloud.cn"], False),
    ("OBS.Example.COM.", ["obs.example.com"], True),
    ("obs.example.com.evil.net", ["obs.example.com"], False),
    ("127.0.0.1", ["localhost"], False),
    ("anything.net", ["*"], True),
])
def test_host_allowlist(host: str, patterns: list[str], allowed: bool) -> None:
    assert safety.host_allowed(host, patterns) is allowed


@pytest.mark.parametrize(("address", "kind"), [
    ("169.254.169.254", "metadata"), ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
    ("192.168.0.1", "private"), ("172.16.5.5", "private"), ("169.254.1.1", "link-local"),
    ("100.64.0.1", "non-public"), ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "private"),
    ("fe80::1", "link-local"),
])
def test_internal_addresses_are_refused_even_for_wildcard_hosts(address: str, kind: str) -> None:
    refusal = safety.address_refusal(address, "files.example.com", ["*.example.com", "*"])
    assert refusal is not None and refusal.startswith(kind)


def test_public_address_passes_and_exact_listing_unlocks_internal_ones() -> None:
    assert safety.address_refusal("93.184.216.34", "files.example.com", ["*.example.com"]) is None
    assert safety.address_refusal("127.0.0.1", "localhost", ["localhost"]) is None
    assert safety.address_refusal("10.0.0.5", "nas.internal", ["nas.internal"]) is None
    assert safety.address_refusal("10.0.0.5", "nas.internal", ["*.internal"]) is not None


@pytest.mark.parametrize(("url", "fragment"), [
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://127.0.0.1:8080/x.wav", "loopback"),
    ("ftp://files.example.com/x.wav", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("https://user:pw@files.example.com/x.wav", "credentials"),
    ("https://other.net/x.wav", "not in VOICECALL_RECORDINGS_ALLOWED_HOSTS"),
])
def test_url_refusals(url: str, fragment: str) -> None:
    refusal = safety.url_refusal(url, ["*.example.com", "169.254.169.254.nip.io", "*"] if "169" in url or "127" in url
                                 else ["*.example.com"])
    assert refusal is not None and fragment in refusal


def test_default_allowlist_is_base_url_host_and_huawei_domains() -> None:
    settings = config.load(RecordingsSettings, huawei_base_url="https://rtccall.cn-north-1.myhuaweicloud.cn:443")
    hosts = settings.allowed_hosts()
    assert hosts[0] == "rtccall.cn-north-1.myhuaweicloud.cn" and "*.myhuaweicloud.com" in hosts
    assert safety.url_refusal("https://obs.cn-north-1.myhuaweicloud.com/r.wav", hosts) is None
    assert safety.url_refusal("https://evil.example/r.wav", hosts) is not None


def test_secret_is_not_in_repr_or_errors() -> None:
    settings = config.load(RecordingsSettings, huawei_app_secret="s3cr3t-value")
    assert "s3cr3t-value" not in repr(settings) and settings.huawei_app_secret.get_secret_value() == "s3cr3t-value"


def test_bad_store_value_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        config.load(RecordingsSettings, recordings_store="ftp://x")
    assert "VOICECALL_RECORDINGS_STORE" in capsys.readouterr().err


def test_allowed_hosts_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECALL_RECORDINGS_ALLOWED_HOSTS", "obs.example.com, *.myhuaweicloud.com")
    assert config.load(RecordingsSettings).allowed_hosts() == ["obs.example.com", "*.myhuaweicloud.com"]


def test_help_lists_every_recordings_setting(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from voicecall import cli
    from voicecall.runtime import streams

    monkeypatch.setattr(streams, "protect", lambda: None)  # pytest owns sys.stdout here
    with pytest.raises(SystemExit):
        cli.main(["recordings", "--help"])  # the list is generated from the settings (voicecall.settingsdoc)
    text = capsys.readouterr().out
    names = [n.upper() for n in RecordingsSettings.model_fields if n.startswith(("recordings_", "huawei_"))]
    assert len(names) >= 15
    missing = [n for n in names if f"VOICECALL_{n}" not in text]
    assert missing == []
