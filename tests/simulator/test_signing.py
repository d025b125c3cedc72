"""Push signatures (pure): the shared digest function, the apps file, and the signer's fault shares."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from voicecall import apps, huawei
from voicecall.simulator import signing
from voicecall.simulator.platform import DEFAULT_APP_SECRET, resolve_apps

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
nonces = st.text("0123456789ABCDEFabcdef", min_size=1, max_size=128)
urls = st.builds(lambda host, path: f"https://{host}.example/{path}", st.text("abcxyz-", min_size=1, max_size=12),
                 st.text("abc/_-", max_size=20))


def verify(header: str, url: str, secrets: tuple[str, ...], forms: tuple[str, ...] = huawei.PUSH_DIGEST_FORMS) -> bool:
    """What a receiver does: recompute the digest with each secret of the app, in each form."""
    fields = huawei.parse_x_aksk(header)
    return any(hmac.compare_digest(huawei.push_digest(secret, url, fields["Nonce"], fields["Created"], form),
                                   fields["PasswordDigest"])
               for secret in secrets for form in forms)


@settings(max_examples=200, deadline=None)
@given(text, urls, nonces, st.sampled_from(huawei.PUSH_DIGEST_FORMS), text)
def test_push_digest_is_hmac_sha256_of_the_documented_message(secret: str, url: str, nonce: str, form: str,
                                                               other: str) -> None:
    created = "2026-03-01T08:00:00Z"
    message = f"{url}\n{nonce}\n{created}" if form == "newline" else f"{url}{nonce}{created}"
    expected = base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()
    assert huawei.push_digest(secret, url, nonce, created, form) == expected
    header = huawei.format_x_aksk("app", expected, nonce, created)
    assert verify(header, url, (secret,), (form,))
    if other != secret:
        assert not verify(header, url, (other,))
    assert not verify(header, url + "x", (secret,), (form,))  # another URL: another digest


def test_signer_signs_with_the_right_app_and_fails_in_the_asked_shares() -> None:
    apps = {"app-a": ("secret-a",), "app-b": ("secret-b1", "secret-b2")}
    signer = signing.Signer(apps, form="concat", bad_share=0.1, replay_share=0.05, unsigned_share=0.02, seed=3)
    urls = ("http://127.0.0.1:8080/notify/status", "http://127.0.0.1:8080/notify/fee")
    kinds: Counter[str] = Counter()
    earlier: dict[tuple[str, str], set[str]] = {}
    for number in range(20_000):
        app, url = ("app-a", "app-b")[number % 2], urls[number % 3 == 0]
        headers, kind = signer.headers(url, app)
        kinds[kind] += 1
        assert headers["Content-Type"] == "application/json;charset=UTF-8"
        if kind == signing.UNSIGNED:
            assert "X-AKSK" not in headers and "Authorization" not in headers
            continue
        assert headers["Authorization"] == huawei.AUTHORIZATION
        value = headers["X-AKSK"]
        fields = huawei.parse_x_aksk(value)
        assert fields["Username"] == app
        other = "app-b" if app == "app-a" else "app-a"
        assert not verify(value, url, apps[other])  # never valid for the other app
        if kind == signing.VALID:
            assert verify(value, url, apps[app][:1], ("concat",))  # the app's first secret, the form asked
            assert not verify(value, url, apps[app], ("newline",))
            assert value not in earlier.get((app, url), set())  # a fresh nonce
        elif kind == signing.BAD_DIGEST:
            assert not verify(value, url, apps[app])
        else:
            assert kind == signing.REPLAYED
            assert value in earlier[(app, url)] and verify(value, url, apps[app])  # valid digest, nonce seen
        earlier.setdefault((app, url), set()).add(value)
    total = sum(kinds.values())
    assert kinds[signing.BAD_DIGEST] / total == pytest.approx(0.1, abs=0.01)
    assert kinds[signing.REPLAYED] / total == pytest.approx(0.05, abs=0.008)
    assert kinds[signing.UNSIGNED] / total == pytest.approx(0.02, abs=0.005)


def test_signer_refuses_bad_settings() -> None:
    with pytest.raises(ValueError):
        signing.Signer({"a": ("s",)}, bad_share=0.6, replay_share=0.6)
    with pytest.raises(ValueError):
        signing.Signer({"a": ("s",)}, form="sha1")
    with pytest.raises(ValueError):
        signing.Signer({"a": ("s",)}, created_zone="mars")
    with pytest.raises(ValueError):
        signing.Signer({})


def test_apps_file_forms_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "apps.json"
    good.write_text('{"a": "sa", "b": ["sb1", "sb2"]}')
    assert apps.load_apps_file(good) == {"a": ("sa",), "b": ("sb1", "sb2")}
    for content, expected in (("[1]", "JSON object"), ('{"a": ["s1", "s2", "s3"]}', "one or two"),
                              ('{"a": ""}', "non-empty"), ('{"a": 5}', "non-empty"), ("{}", "no apps"),
                              ("{not json", "not JSON")):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(ValueError, match=expected) as error:
            apps.load_apps_file(bad)
        assert "s1" not in str(error.value) and str(bad) in str(error.value)
    with pytest.raises(ValueError, match="apps file"):
        apps.load_apps_file(tmp_path / "absent.json")
    secret = "do-not-print-me"
    with pytest.raises(ValueError) as error:
        apps.parse_apps({"a": [secret, secret, secret]})
    assert secret not in str(error.value)


def test_resolve_apps() -> None:
    # nothing given: one default app, and no secret counts as given (pushes unsigned by default)
    assert resolve_apps(None, None, None) == ({"sim-app-key": (DEFAULT_APP_SECRET,)}, False)
    assert resolve_apps(None, "k", "s") == ({"k": ("s",)}, True)
    # the apps file first, then the single app; the default key without a secret is not an app
    assert resolve_apps({"a": "sa"}, "sim-app-key", None) == ({"a": ("sa",)}, True)
    assert resolve_apps({"a": "sa"}, "k", "s") == ({"a": ("sa",), "k": ("s",)}, True)
    assert resolve_apps({"a": ["sa"]}, "a", "s2") == ({"a": ("sa", "s2")}, True)
