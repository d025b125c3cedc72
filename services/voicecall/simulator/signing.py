"""The simulated platform's apps and the signatures on its pushes, with fault injection.

Each push carries the documented ``Authorization`` and ``X-AKSK`` headers, signed with the app of the call
(``Username`` = its appKey, the first secret listed for it), PasswordDigest from :func:`voicecall.huawei.push_digest`
— the function the ingress verifies with — in the form asked (``newline`` or ``concat``; ``request`` = Nonce +
Created like the request-side APIs). Whether the platform signs pushes at all, and with which form and which time
zone in ``Created``, is not settled by Huawei's pages, hence the options.

Faults, each in a share of pushes: ``unsigned`` (no signature headers), ``bad-digest`` (a digest made with a wrong
secret), ``replayed-nonce`` (the whole ``X-AKSK`` of the app's previous push to the same URL sent again: a valid
digest with a nonce already seen).

The apps file has the pipeline's format and parser (:mod:`voicecall.apps`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from voicecall import huawei
from voicecall.simulator.pushes import CONTENT_TYPE

PUSH_DIGESTS = (*huawei.PUSH_DIGEST_FORMS, "request")
# Created on pushes: the push pages' text says UTC+8 (Beijing time), their example ends in "Z".
PUSH_CREATED_ZONES = ("utc", "beijing")
VALID, BAD_DIGEST, REPLAYED, UNSIGNED = "valid", "bad-digest", "replayed-nonce", "unsigned"

def push_created(zone: str = "utc", now: datetime | None = None) -> str:
    """``Created`` of a push: UTC, or Beijing time (UTC+8) written with the same trailing ``Z`` as the example."""
    if zone not in PUSH_CREATED_ZONES:
        raise ValueError(f"push Created zone must be one of {PUSH_CREATED_ZONES}")
    moment = now or datetime.now(UTC)
    if zone == "beijing":
        moment += timedelta(hours=8)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def x_aksk(url: str, app_key: str, app_secret: str, form: str = "newline", created_zone: str = "utc") -> str:
    """The ``X-AKSK`` value of one push to ``url``, with a fresh nonce."""
    nonce = huawei.new_nonce()
    created = push_created(created_zone)
    if form == "request":
        digest = huawei.password_digest(app_secret, nonce, created)
    else:
        digest = huawei.push_digest(app_secret, url, nonce, created, form)
    return huawei.format_x_aksk(app_key, digest, nonce, created)


def push_headers(url: str, app_key: str | None = None, app_secret: str | None = None,
                 signature: str = "newline", created_zone: str = "utc") -> dict[str, str]:
    """Headers of one push; the documented ``Authorization``/``X-AKSK`` pair only when signing is on."""
    headers = {"Content-Type": CONTENT_TYPE}
    if app_key is not None and app_secret is not None:
        headers["Authorization"] = huawei.AUTHORIZATION
        headers["X-AKSK"] = x_aksk(url, app_key, app_secret, signature, created_zone)
    return headers


class Signer:
    """Headers for each push of a run; ``kind`` of each is one of valid/bad-digest/replayed-nonce/unsigned."""

    def __init__(self, apps: Mapping[str, Sequence[str]], *, form: str = "newline", created_zone: str = "utc",
                 bad_share: float = 0.0, replay_share: float = 0.0, unsigned_share: float = 0.0,
                 seed: int = 0) -> None:
        if form not in PUSH_DIGESTS:
            raise ValueError(f"push digest form must be one of {PUSH_DIGESTS}")
        if created_zone not in PUSH_CREATED_ZONES:
            raise ValueError(f"push Created zone must be one of {PUSH_CREATED_ZONES}")
        shares = (unsigned_share, bad_share, replay_share)
        if not all(0.0 <= share <= 1.0 for share in shares) or sum(shares) > 1.0:
            raise ValueError("the unsigned, bad-signature and replayed-nonce shares are each 0..1, together ≤ 1")
        if not apps or not all(apps.values()):
            raise ValueError("signing needs at least one app with a secret")
        self.secrets = {key: str(values[0]) for key, values in apps.items()}  # the platform signs with one
        self.form = form
        self.created_zone = created_zone
        self.limits = (unsigned_share, unsigned_share + bad_share, unsigned_share + bad_share + replay_share)
        self.rng = random.Random(f"{seed}/signatures")
        self._last: dict[tuple[str, str], str] = {}  # (app, url) → the X-AKSK of its last valid push

    def headers(self, url: str, app_key: str) -> tuple[dict[str, str], str]:
        secret = self.secrets[app_key]
        roll = self.rng.random()
        unsigned, bad, replay = self.limits
        if roll < unsigned:
            return {"Content-Type": CONTENT_TYPE}, UNSIGNED
        kind = VALID
        if roll < bad:
            value, kind = x_aksk(url, app_key, "not-" + secret, self.form, self.created_zone), BAD_DIGEST
        elif roll < replay and (app_key, url) in self._last:
            value, kind = self._last[(app_key, url)], REPLAYED
        else:
            value = self._last[(app_key, url)] = x_aksk(url, app_key, secret, self.form, self.created_zone)
        return {"Content-Type": CONTENT_TYPE, "Authorization": huawei.AUTHORIZATION, "X-AKSK": value}, kind
