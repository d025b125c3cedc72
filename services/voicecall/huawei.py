"""Platform facts shared by every stage: Huawei's time format and the X-AKSK signatures (requests and pushes).

Times in pushes are UTC ``yyyy-MM-dd HH:mm:ss``; old platform versions put two spaces between date and time
(Huawei's old RTC demo ``HostingVoiceEventDemoImpl``), and unanswered legs may carry ``""`` instead of omitting the
field.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from voicecall.runtime import times

_TIME = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})\s+(\d{2}):(\d{2}):(\d{2})\s*$")
# The platform's usual form, for a fast path (datetime.fromisoformat is several times cheaper than the general path
# below: bench/micro.py).
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2} (?:[01]\d|2[0-3]):\d{2}:\d{2}", re.ASCII)

AUTHORIZATION = 'AKSK realm="SDP",profile="UsernameToken",type="Appkey"'

# Recordings: only voice callbacks (serviceType "002") record, and the platform makes no recording of a call whose
# talk time (for a callback the B leg: callEndTime - fwdAnswerTime) is under 3 seconds.
MIN_RECORDED_SECONDS = 3.0


class BadTime(ValueError):
    """A time field that is present and not empty but cannot be read."""


def parse_time(value: object) -> datetime | None:
    """A Huawei UTC time → aware datetime; ``None`` when absent or ``""``; :class:`BadTime` when unreadable."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadTime(f"not a time string: {value!r}")
    if _CANONICAL.fullmatch(value):
        try:
            return datetime.fromisoformat(value + "+00:00")  # tzinfo is UTC; replace(tzinfo=) costs several times more
        except ValueError:
            pass  # an impossible date: the general path below words the error
    match = _TIME.match(value)
    if not match:
        raise BadTime(f"not yyyy-MM-dd HH:mm:ss: {value!r}")
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as error:
        raise BadTime(f"impossible time {value!r}: {error}") from None


def normalise_time(value: str) -> str:
    """Collapse runs of whitespace inside a time string (``"2016-12-26  01:19:46"`` → one space)."""
    return " ".join(value.split())


def created_now() -> str:
    """``Created`` for X-AKSK: UTC ``YYYY-MM-DDTHH:MM:SSZ`` (the official sample's local-time bug avoided)."""
    return times.iso_z(datetime.now(UTC))


def password_digest(app_secret: str, nonce: str, created: str) -> str:
    """Request-side PasswordDigest = Base64(HMAC-SHA256(APP_Secret, Nonce + Created)) (rtc_05_0011)."""
    mac = hmac.new(app_secret.encode(), (nonce + created).encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


# The two message forms of the push PasswordDigest: the current push pages write url + "\n" + nonce + "\n" + created,
# the 2022-05 revision of the same pages wrote url + nonce + created.
PUSH_DIGEST_FORMS = ("newline", "concat")


def push_message(url: str, nonce: str, created: str, form: str = "newline") -> bytes:
    """The signed message of a push digest in one of :data:`PUSH_DIGEST_FORMS`."""
    if form == "newline":
        return f"{url}\n{nonce}\n{created}".encode()
    if form == "concat":
        return f"{url}{nonce}{created}".encode()
    raise ValueError(f"push digest form must be one of {PUSH_DIGEST_FORMS}")


def push_mac(app_secret: str) -> Any:
    """The HMAC keyed with ``app_secret`` for push digests: the push pages do not name the hash; HMAC-SHA256 is the
    one the request-side APIs use. A verifier keys it once per secret and copies it per push."""
    return hmac.new(app_secret.encode(), digestmod=hashlib.sha256)


def push_digest(app_secret: str, url: str, nonce: str, created: str, form: str = "newline") -> str:
    """PasswordDigest of a status or CDR push: Base64(HMAC(APP_Secret, message)), ``url`` the push URL the SP
    registered (:mod:`voicecall.ingress.signature` says where Huawei's pages and FAQ disagree about it)."""
    mac = push_mac(app_secret)
    mac.update(push_message(url, nonce, created, form))
    return base64.b64encode(mac.digest()).decode()


def format_x_aksk(app_key: str, digest: str, nonce: str, created: str) -> str:
    return f'UsernameToken Username="{app_key}",PasswordDigest="{digest}",Nonce="{nonce}",Created="{created}"'


def new_nonce() -> str:
    """A secure random Nonce (the pages ask for one; 32 hex digits, as in their example)."""
    return secrets.token_hex(16).upper()


def x_aksk(app_key: str, app_secret: str, nonce: str | None = None, created: str | None = None) -> str:
    """The ``X-AKSK`` header value, with a fresh secure random Nonce and UTC Created unless given."""
    nonce = nonce or new_nonce()
    created = created or created_now()
    return format_x_aksk(app_key, password_digest(app_secret, nonce, created), nonce, created)


def auth_headers(app_key: str, app_secret: str) -> dict[str, str]:
    """The two documented headers for calls to the platform's REST API."""
    return {"Authorization": AUTHORIZATION, "X-AKSK": x_aksk(app_key, app_secret)}


_FIELD = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def parse_x_aksk(header: str) -> dict[str, str]:
    """``UsernameToken Username="…", PasswordDigest="…", …`` → its fields (spaces after commas tolerated)."""
    head, _, rest = header.strip().partition(" ")
    fields = dict(_FIELD.findall(rest))
    if head == "UsernameToken":
        fields["UsernameToken"] = ""
    return fields


# The documented layout (fields in this order, optional space after each comma): one match instead of a scan.
_USUAL = re.compile(r'\s*UsernameToken Username="([^"]*)", ?PasswordDigest="([^"]*)", ?Nonce="([^"]*)", ?'
                    r'Created="([^"]*)"\s*').fullmatch


def x_aksk_fields(header: str) -> tuple[str, str, str, str] | None:
    """``(Username, PasswordDigest, Nonce, Created)`` of an ``X-AKSK`` value (fields in any order), or None when
    it is not ``UsernameToken`` or lacks one of them."""
    usual = _USUAL(header)
    if usual is not None:
        return usual.group(1, 2, 3, 4)  # type: ignore[return-value]
    fields = parse_x_aksk(header)
    if "UsernameToken" not in fields:
        return None
    try:
        return fields["Username"], fields["PasswordDigest"], fields["Nonce"], fields["Created"]
    except KeyError:
        return None


def record_flag_set(value: object) -> bool:
    """A CDR's ``recordFlag`` says recorded: 1, also ``"1"``, ``true`` or ``"true"`` (the exact form is
    UNCONFIRMED)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return False


def is_callback(service_type: object) -> bool:
    """``serviceType`` "002" (voice callback). Absent: a record with recordFlag and fwd* times is one, since only
    callbacks carry them."""
    if service_type is None or service_type == "":
        return True
    return str(service_type).strip().lstrip("0") == "2"
