"""Push authenticity, the pure core: the ``X-AKSK`` header of a push, its URL and the clock → the outcome.

Huawei's sources disagree on whether pushes are signed at all. The status and CDR notification pages of 语音回呼/
语音通知/语音验证码 (呼叫状态通知API rtc_05_0008/rtc_05_0014, 话单通知API; the 2022-05 and 2023-11 revisions and the
current one) list ``Authorization: AKSK realm="SDP",profile="UsernameToken",type="Appkey"`` and
``X-AKSK: UsernameToken Username="<appKey>", PasswordDigest="<d>", Nonce="<n>", Created="<t>"`` on every push, with
``d = Base64(HMAC(appSecret, url + "\\n" + n + "\\n" + t))`` (current revision) or ``url + n + t`` (2022-05
revision), ``url`` the push URL the SP registered. The FAQ "为什么没有收到呼叫状态通知和话单通知?"
(VoiceCall_faq_00003, 2021-07) says pushes carry no authentication at all. Hence: verify what comes, accept both
message forms, and let the operator choose (``VOICECALL_INGRESS_SIGNATURE``: ``log`` by default, ``enforce``).
The pages do not name the hash: HMAC-SHA256 is the one Huawei's request-side APIs use (rtc_05_0011). Their text
calls ``Created`` Beijing time (UTC+8) while their example ends in ``Z``: it is read both ways, and which one
matched is part of the verdict, so operators learn what the platform really sends.

Checks, in order (the first that fails names the outcome ``invalid:<check>``): ``malformed-header`` (not
``UsernameToken`` with Username, PasswordDigest, Nonce and a Created ``YYYY-MM-DDTHH:MM:SSZ``), ``unknown-app``,
``skew`` (Created further than the allowed skew from now, read either way), ``digest`` (no secret of the app, in
neither form, gives the digest; compared in constant time), ``replayed-nonce`` (the nonce of an earlier valid push
of the same app within the window). Only valid pushes put their nonce in the cache: an invalid one cannot push a
genuine nonce out. The cache forgets a nonce after twice the skew (the longest its push can pass the skew check)
and holds at most ``nonce_cap`` of them; a push evicted early by the cap is counted (``on_evict``).
"""

from __future__ import annotations

import binascii
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from voicecall import huawei
from voicecall.apps import Apps

OFF, LOG, ENFORCE = "off", "log", "enforce"
MODES = (OFF, LOG, ENFORCE)
VALID, ABSENT, UNCHECKED = "valid", "absent", "unchecked"
CHECKS = ("malformed-header", "unknown-app", "skew", "digest", "replayed-nonce")
OUTCOMES = (VALID, ABSENT, *(f"invalid:{check}" for check in CHECKS), UNCHECKED)
BEIJING = 8 * 3600.0
ZONES = ("utc", "beijing")
FORMS = huawei.PUSH_DIGEST_FORMS

# A verdict: (outcome, message form, Created zone, nonce key). Form and zone are "" unless valid; the nonce key lets
# the shell forget a nonce whose push it could not make durable (the platform may send it again).
Verdict = tuple[str, str, str, str]
_MALFORMED, _UNKNOWN, _SKEW, _DIGEST, _REPLAYED = ((f"invalid:{check}", "", "", "") for check in CHECKS)
ABSENT_VERDICT: Verdict = (ABSENT, "", "", "")
UNCHECKED_VERDICT: Verdict = (UNCHECKED, "", "", "")

# The documented form; fractions of a second tolerated (the digest covers Created as sent, so it stays exact).
_CREATED = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?Z", re.ASCII).fullmatch
_DIGEST_SIZE = 32  # SHA-256
_MAX_NONCE = 128  # "1–128 digits and letters"


def verify_digest(mac: Any, url: str, nonce: str, created: str, expected: bytes, forms: tuple[str, ...] = FORMS
                  ) -> str:
    """The message form (of ``forms``, in that order) under which the keyed ``mac`` gives ``expected``, or ""."""
    for form in forms:
        one = mac.copy()
        one.update(huawei.push_message(url, nonce, created, form))
        if hmac.compare_digest(one.digest(), expected):
            return form
    return ""


class Verifier:
    """The verdict of each push; ``apps`` gives the apps in use (a new dict object whenever they change)."""

    def __init__(self, apps: Callable[[], Apps], skew: float, nonce_cap: int, *,
                 on_evict: Callable[[], None] = lambda: None) -> None:
        self.apps = apps
        self.skew = skew
        self.nonce_cap = nonce_cap
        self.on_evict = on_evict
        # app + "\0" + nonce → when to forget it, oldest first (an OrderedDict: a dict's first key is found by
        # skipping the slots of every key deleted before it)
        self.nonces: OrderedDict[str, float] = OrderedDict()
        self._seen: Apps | None = None
        self._keys: dict[str, tuple[Any, ...]] = {}
        self._created = ("", 0.0)
        self.forms: tuple[str, ...] = FORMS  # the last Created read: a burst of pushes shares a second

    def _secrets(self) -> dict[str, tuple[Any, ...]]:
        apps = self.apps()
        if apps is not self._seen:
            self._keys = {key: tuple(huawei.push_mac(secret) for secret in secrets) for key, secrets in apps.items()}
            self._seen = apps
        return self._keys

    def _epoch(self, created: str) -> float | None:
        last, epoch = self._created
        if created == last:
            return epoch
        match = _CREATED(created)
        if match is None:
            return None
        year, month, day, hour, minute, second = map(int, match.groups())
        try:
            epoch = datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()
        except ValueError:  # month 13, 25 o'clock
            return None
        self._created = (created, epoch)
        return epoch

    def verify(self, x_aksk: str | None, url: str, now: float) -> Verdict:
        """The verdict on a push carrying ``x_aksk`` (None: no such header) sent to ``url`` at ``now`` (epoch)."""
        if x_aksk is None:
            return ABSENT_VERDICT
        fields = huawei.x_aksk_fields(x_aksk)
        if fields is None:
            return _MALFORMED
        app, digest, nonce, created = fields
        if not app or not digest or not nonce or len(nonce) > _MAX_NONCE:
            return _MALFORMED
        epoch = self._epoch(created)
        if epoch is None:
            return _MALFORMED
        try:
            expected = binascii.a2b_base64(digest, strict_mode=True)
        except binascii.Error:
            return _MALFORMED
        secrets = self._secrets().get(app)
        if secrets is None:
            return _UNKNOWN
        skew = self.skew
        if abs(now - epoch) <= skew:
            zone = "utc"
        elif abs(now - (epoch - BEIJING)) <= skew:
            zone = "beijing"
        else:
            return _SKEW
        form = ""
        if len(expected) == _DIGEST_SIZE:
            for index, secret in enumerate(secrets):
                form = verify_digest(secret, url, nonce, created, expected, self.forms)
                if form:
                    self._prefer(app, secrets, index, form)
                    break
        if not form:
            return _DIGEST
        key = f"{app}\0{nonce}"
        if not self._remember(key, now):
            return _REPLAYED
        return VALID, form, zone, key

    def _prefer(self, app: str, secrets: tuple[Any, ...], index: int, form: str) -> None:
        """The secret and form that matched are tried first from now on: a platform sends one form, and after a
        rotation signs with the new secret only, so a valid push costs one HMAC again."""
        if index:
            self._keys[app] = (secrets[index], *secrets[:index], *secrets[index + 1:])
        if form != self.forms[0]:
            self.forms = (form, *(other for other in self.forms if other != form))

    def _remember(self, key: str, now: float) -> bool:
        """False when ``key`` is in the window already; otherwise it is kept for twice the skew."""
        nonces = self.nonces
        expiry = nonces.get(key)
        if expiry is not None:
            if expiry > now:
                return False
            del nonces[key]  # inserted again below, at the end where its new expiry belongs
        while nonces:  # the oldest first: expiries are in insertion order
            oldest = next(iter(nonces))
            if nonces[oldest] > now and len(nonces) < self.nonce_cap:
                break
            if nonces.popitem(last=False)[1] > now:
                self.on_evict()
        nonces[key] = now + 2 * self.skew
        return True

    def forget(self, key: str) -> None:
        """Forget the nonce of a push that was not made durable (answered 503): the platform may send it again."""
        if key:
            self.nonces.pop(key, None)
