"""Push signatures, the pure core: the verdict on an X-AKSK header for every outcome, the skew edges, the nonce
cache's window and cap, and the apps registry (file re-read on change, a broken file keeps the last good apps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from ingress_helpers import write_apps

from voicecall import apps as apps_module, huawei
from voicecall.apps import AppRegistry, AppsSettings
from voicecall.ingress.signature import BEIJING, Verifier
from voicecall.simulator import signing

NOW = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
URL = "https://sp.example.com/notify/fee"
SKEW = 300.0

keys = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.", min_size=1, max_size=40)
secrets = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=64)
nonces = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1, max_size=128)
urls = st.builds(lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
                 st.sampled_from(["http", "https"]), st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1,
                                                             max_size=30),
                 st.sampled_from(["", ":443", ":8080"]), st.text("abcdefghijklmnopqrstuvwxyz0123456789-:./",
                                                                 max_size=60))


def created(moment: datetime, zone: str = "utc") -> str:
    return signing.push_created(zone, moment)


def header(app: str, secret: str, nonce: str = "66C92B11FF8A425FB8D4CCFE0ED9ED1F", when: str | None = None,
           url: str = URL, form: str = "newline") -> str:
    when = when or created(NOW)
    return huawei.format_x_aksk(app, huawei.push_digest(secret, url, nonce, when, form), nonce, when)


def verifier(apps: dict[str, tuple[str, ...]] | None = None, cap: int = 1000, evicted: list[int] | None = None
             ) -> Verifier:
    fixed = apps if apps is not None else {"app": ("secret",)}
    count = evicted if evicted is not None else [0]
    return Verifier(lambda: fixed, SKEW, cap, on_evict=lambda: count.__setitem__(0, count[0] + 1))


@settings(max_examples=300, deadline=None)
@given(keys, secrets, nonces, urls, st.sampled_from(huawei.PUSH_DIGEST_FORMS), st.sampled_from(("utc", "beijing")),
       st.integers(-int(SKEW), int(SKEW)))
def test_round_trip_over_random_keys_nonces_urls_forms_and_zones(app: str, secret: str, nonce: str, url: str,
                                                                 form: str, zone: str, offset: int) -> None:
    check = verifier({app: ("other-secret", secret)})
    when = created(NOW + timedelta(seconds=offset), zone)
    outcome, got_form, got_zone, key = check.verify(header(app, secret, nonce, when, url, form), url, NOW.timestamp())
    assert (outcome, got_form, got_zone) == ("valid", form, zone)
    assert key and nonce in key
    # the same header for another URL, or with another secret, does not verify
    fresh = verifier({app: ("other-secret",)})
    assert fresh.verify(header(app, secret, nonce, when, url, form), url, NOW.timestamp())[0] == "invalid:digest"
    assert verifier({app: (secret,)}).verify(header(app, secret, nonce, when, url, form), url + "x",
                                             NOW.timestamp())[0] == "invalid:digest"


def test_fields_in_any_order_and_with_spaces_verify() -> None:
    when = created(NOW)
    digest = huawei.push_digest("secret", URL, "N1", when)
    reordered = f'UsernameToken Created="{when}", Nonce="N1",  PasswordDigest="{digest}", Username="app"'
    assert verifier().verify(reordered, URL, NOW.timestamp())[0] == "valid"
    assert huawei.x_aksk_fields(reordered) == ("app", digest, "N1", when)


@pytest.mark.parametrize(("value", "why"), [
    ("", "empty"),
    ("garbage", "not UsernameToken"),
    ('Digest Username="app",PasswordDigest="x",Nonce="n",Created="2026-03-01T08:00:00Z"', "other scheme"),
    ('UsernameToken Username="app",Nonce="n",Created="2026-03-01T08:00:00Z"', "no digest"),
    ('UsernameToken Username="app",PasswordDigest="AAAA",Created="2026-03-01T08:00:00Z"', "no nonce"),
    ('UsernameToken Username="app",PasswordDigest="AAAA",Nonce="n"', "no created"),
    ('UsernameToken Username="",PasswordDigest="AAAA",Nonce="n",Created="2026-03-01T08:00:00Z"', "empty app"),
    ('UsernameToken Username="app",PasswordDigest="AAAA",Nonce="n",Created="2026-03-01 08:00:00"', "time form"),
    ('UsernameToken Username="app",PasswordDigest="AAAA",Nonce="n",Created="2026-13-01T08:00:00Z"', "month 13"),
    ('UsernameToken Username="app",PasswordDigest="AAAA",Nonce="n",Created="2026-03-01T08:00:00+08:00"', "offset"),
    ('UsernameToken Username="app",PasswordDigest="not base64!",Nonce="n",Created="2026-03-01T08:00:00Z"', "b64"),
    ('UsernameToken Username="app",PasswordDigest="AAAA",Nonce="' + "n" * 129 + '",Created="2026-03-01T08:00:00Z"',
     "nonce over 128"),
])
def test_malformed_header(value: str, why: str) -> None:
    assert verifier().verify(value, URL, NOW.timestamp())[0] == "invalid:malformed-header", why


def test_absent_unknown_app_digest_and_replay() -> None:
    check = verifier({"app": ("secret",)})
    now = NOW.timestamp()
    assert check.verify(None, URL, now)[0] == "absent"
    assert check.verify(header("stranger", "secret"), URL, now)[0] == "invalid:unknown-app"
    assert check.verify(header("app", "wrong"), URL, now)[0] == "invalid:digest"
    # the request-side digest (Nonce + Created, no URL) is not a push digest
    request_form = huawei.format_x_aksk("app", huawei.password_digest("secret", "N2", created(NOW)), "N2",
                                        created(NOW))
    assert check.verify(request_form, URL, now)[0] == "invalid:digest"
    valid = header("app", "secret", nonce="N3")
    assert check.verify(valid, URL, now)[0] == "valid"
    assert check.verify(valid, URL, now + 10)[0] == "invalid:replayed-nonce"
    # an invalid push with a nonce does not take it: the genuine push with that nonce still passes
    assert check.verify(header("app", "wrong", nonce="N4"), URL, now)[0] == "invalid:digest"
    assert check.verify(header("app", "secret", nonce="N4"), URL, now)[0] == "valid"


def test_a_nonce_is_per_app() -> None:
    check = verifier({"a": ("sa",), "b": ("sb",)})
    assert check.verify(header("a", "sa", nonce="SAME"), URL, NOW.timestamp())[0] == "valid"
    assert check.verify(header("b", "sb", nonce="SAME"), URL, NOW.timestamp())[0] == "valid"


@pytest.mark.parametrize(("offset", "zone", "outcome"), [
    (0, "utc", "valid"), (SKEW, "utc", "valid"), (-SKEW, "utc", "valid"),
    (SKEW + 1, "utc", "invalid:skew"), (-SKEW - 1, "utc", "invalid:skew"),
    (SKEW, "beijing", "valid"), (-SKEW, "beijing", "valid"),
    (SKEW + 1, "beijing", "invalid:skew"), (-SKEW - 1, "beijing", "invalid:skew"),
    (4 * 3600, "utc", "invalid:skew"),  # half way between the two readings
])
def test_skew_edges(offset: float, zone: str, outcome: str) -> None:
    """``offset``: how far the sender's clock is from ours; Created is written in ``zone``."""
    when = created(NOW + timedelta(seconds=offset), zone)
    got = verifier().verify(header("app", "secret", when=when), URL, NOW.timestamp())
    assert got[0] == outcome
    if outcome == "valid":
        assert got[2] == zone


def test_created_with_a_fraction_of_a_second_verifies() -> None:
    assert verifier().verify(header("app", "secret", when="2026-03-01T08:00:00.123Z"), URL,
                             NOW.timestamp())[0] == "valid"


def test_beijing_time_is_eight_hours_ahead() -> None:
    assert BEIJING == 8 * 3600
    assert created(NOW, "beijing") == "2026-03-01T16:00:00Z"


def test_the_nonce_cache_forgets_after_the_window_and_is_capped() -> None:
    evicted = [0]
    check = verifier(cap=100, evicted=evicted)
    now = NOW.timestamp()
    for index in range(100):
        assert check._remember(f"k{index}", now)
    assert evicted == [0] and len(check.nonces) == 100
    assert not check._remember("k0", now + 2 * SKEW - 1)  # still in the window
    for index in range(50):  # the cap pushes the oldest out early, and says so
        assert check._remember(f"more{index}", now + 1)
    assert evicted == [50] and len(check.nonces) == 100
    assert check._remember("k0", now + 2)  # evicted: a replay of it passes now (hence the metric); one more out
    # once the window is over, the old ones go without counting as evictions
    later = now + 2 * SKEW + 10
    assert check._remember("late", later)
    assert evicted == [51] and len(check.nonces) == 1
    assert check._remember("more0", later)  # expired: accepted again, and moved to the end
    assert list(check.nonces) == ["late", "more0"]
    check.forget("late")
    assert list(check.nonces) == ["more0"]


def test_rotation_both_secrets_verify_while_both_are_listed() -> None:
    apps = {"app": ("old",)}
    check = Verifier(lambda: apps, SKEW, 1000)
    now = NOW.timestamp()
    assert check.verify(header("app", "old", nonce="A"), URL, now)[0] == "valid"
    assert check.verify(header("app", "new", nonce="B"), URL, now)[0] == "invalid:digest"
    apps = {"app": ("old", "new")}  # a new dict: the verifier keys the new secrets
    assert check.verify(header("app", "old", nonce="C"), URL, now)[0] == "valid"
    assert check.verify(header("app", "new", nonce="D", form="concat"), URL, now)[:2] == ("valid", "concat")
    apps = {"app": ("new",)}
    assert check.verify(header("app", "old", nonce="E"), URL, now)[0] == "invalid:digest"
    assert check.verify(header("app", "new", nonce="F"), URL, now)[0] == "valid"


# --- the apps registry --------------------------------------------------------------------------------------------

def test_the_registry_reads_the_file_again_when_it_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "apps.json"
    write_apps(path, {"a": "sa-secret-1"})
    clock = [0.0]
    registry = AppRegistry(str(path), ("single", "single-secret-9"), every=1.0, clock=lambda: clock[0])
    first = registry.current()
    assert first == {"a": ("sa-secret-1",), "single": ("single-secret-9",)}
    write_apps(path, {"a": ["sa-secret-1", "sa-secret-2"], "b": "sb-secret-3"})
    assert registry.current() is first  # not looked at before a second has passed
    clock[0] = 1.0
    second = registry.current()
    assert second == {"a": ("sa-secret-1", "sa-secret-2"), "b": ("sb-secret-3",), "single": ("single-secret-9",)}
    clock[0] = 2.0
    assert registry.current() is second  # unchanged stat: the same object, no re-read
    broken_before = apps_module.BROKEN._value.get()
    for bad in (b'{"a": ', b'{"a": ["x", "y", "z"]}', b"[]"):
        write_apps(path, bad)
        clock[0] += 1.0
        assert registry.current() is second  # the last good apps stay
        assert registry.broken and apps_module.BROKEN._value.get() == 1
    assert broken_before == 0
    path.unlink()
    clock[0] += 1.0
    assert registry.current() is second
    write_apps(path, {"c": "sc-secret-4"})
    clock[0] += 1.0
    assert registry.current() == {"c": ("sc-secret-4",), "single": ("single-secret-9",)}
    assert not registry.broken and apps_module.BROKEN._value.get() == 0
    printed = capsys.readouterr()
    for secret in ("sa-secret-1", "sa-secret-2", "sb-secret-3", "sc-secret-4", "single-secret-9"):
        assert secret not in printed.out + printed.err + caplog.text


def test_a_broken_file_at_start_stops_with_the_variable_named_and_no_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "apps.json"
    path.write_text('{"app": ["s3cr3t-one", "s3cr3t-two", "s3cr3t-three"]}')
    monkeypatch.setenv("VOICECALL_HUAWEI_APPS_FILE", str(path))
    from voicecall.runtime import config

    with pytest.raises(SystemExit) as stop:
        config.load(AppsSettings)
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert "VOICECALL_HUAWEI_APPS_FILE" in message and "'app'" in message and "s3cr3t" not in message
    monkeypatch.delenv("VOICECALL_HUAWEI_APPS_FILE")
    path.write_text('{"app": "s3cr3t-one", ')
    with pytest.raises(ValueError) as error:
        apps_module.load_apps_file(path)
    assert "s3cr3t" not in str(error.value) and "line 1" in str(error.value)
    settings = AppsSettings(huawei_app_key="k", huawei_app_secret="s3cr3t-one")  # type: ignore[arg-type]
    assert "s3cr3t" not in repr(settings) and settings.single_app() == ("k", "s3cr3t-one")


def test_the_matching_secret_and_form_are_tried_first_afterwards() -> None:
    check = verifier({"app": ("old", "new")})
    now = NOW.timestamp()
    assert check.forms == ("newline", "concat")
    assert check.verify(header("app", "new", nonce="P1", form="concat"), URL, now)[:2] == ("valid", "concat")
    assert check.forms == ("concat", "newline")
    assert [mac.copy().digest() for mac in check._keys["app"]] == [
        huawei.push_mac(secret).digest() for secret in ("new", "old")]
    # both still verify, in both forms
    assert check.verify(header("app", "old", nonce="P2"), URL, now)[:2] == ("valid", "newline")
    assert check.verify(header("app", "new", nonce="P3", form="concat"), URL, now)[:2] == ("valid", "concat")
