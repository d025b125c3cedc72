"""The shell of push signatures: which URL a push was signed for, the verdict before the body is read, the metrics,
the ``voicecall-signature`` header on every record, and in ``enforce`` mode the 401 and its deadletter record.

The verdict comes from :mod:`voicecall.ingress.signature` (the pure core) with the apps of
:class:`voicecall.apps.AppRegistry` (the apps file, re-read when it changes).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from voicecall.apps import AppRegistry
from voicecall.ingress import metrics, signature
from voicecall.ingress.config import IngressSettings
from voicecall.ingress.parse import Outcome, Parser
from voicecall.runtime import deadletter
from voicecall.runtime.cloudevents import SIGNATURE
from voicecall.runtime.deadletter import Reason
from voicecall.runtime.record import Record

_LABELS = {outcome: (outcome,) for outcome in signature.OUTCOMES}
_HEADERS = {outcome: (SIGNATURE, outcome.encode()) for outcome in signature.OUTCOMES}  # made once, not per push
_DETAILS = {outcome: f"signature check failed: {outcome.removeprefix('invalid:')}"
            for outcome in signature.OUTCOMES if outcome.startswith("invalid:")}
_DETAILS[signature.ABSENT] = "the push carries no X-AKSK signature"


class Gate:
    """One per ingress process; ``mode`` is off, log or enforce."""

    def __init__(self, settings: IngressSettings) -> None:
        self.mode = settings.ingress_signature
        self.enforce = self.mode == signature.ENFORCE
        self.public_url = settings.ingress_public_url.rstrip("/") if settings.ingress_public_url else None
        self.apps = AppRegistry.from_settings(settings)
        self.verifier = signature.Verifier(self.apps.current, settings.ingress_signature_skew,
                                           settings.ingress_signature_nonces, on_evict=metrics.NONCE_EVICTIONS.add)
        for mode in signature.MODES:
            metrics.SIGNATURE_MODE.labels(mode).set(1 if mode == self.mode else 0)
        metrics.NONCES.set_function(lambda: len(self.verifier.nonces))
        for labels in _LABELS.values():
            metrics.SIGNATURES.add(labels, 0)  # every outcome shows from the start (alerts on rate() need it)
        self._valid = {form: {zone: (form, zone) for zone in signature.ZONES} for form in signature.FORMS}

    def signed_url(self, path: str) -> str | None:
        """The URL a push to ``path`` is signed for, when it does not depend on the request (a public URL)."""
        return self.public_url + path if self.public_url is not None else None

    def check(self, request: web.Request, url: str | None, path: str) -> signature.Verdict:
        """The verdict on ``request`` (``url``: from :meth:`signed_url`; None = the URL it arrived on)."""
        if self.mode == signature.OFF:
            verdict = signature.UNCHECKED_VERDICT
        elif (x_aksk := request.headers.get("X-AKSK")) is None:  # the URL and the clock: only for a signature
            verdict = signature.ABSENT_VERDICT
        else:
            verdict = self.verifier.verify(x_aksk, url or f"{request.scheme}://{request.host}{path}", time.time())
        metrics.SIGNATURES.add(_LABELS[verdict[0]])
        if verdict[1]:
            metrics.SIGNATURES_VALID.add(self._valid[verdict[1]][verdict[2]])
        return verdict

    def refuses(self, verdict: signature.Verdict) -> bool:
        return self.enforce and verdict[0] != signature.VALID

    @staticmethod
    def refusal(parser: Parser, verdict: signature.Verdict, body: bytes, origin: dict[str, Any], received: str,
                push_id: str) -> Outcome:
        """``enforce``: the 401 and the push kept in deadletter (reason bad-signature, the check in detail)."""
        try:
            doc: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = deadletter.UNPARSED
        return parser.reject(body, Reason.BAD_SIGNATURE, _DETAILS[verdict[0]], origin, received, push_id, doc,
                             status=401)

    @staticmethod
    def stamp(records: list[Record], verdict: signature.Verdict) -> None:
        """The outcome as header ``voicecall-signature`` on every record of the push."""
        header = _HEADERS[verdict[0]]
        for record in records:
            record.headers.append(header)

    def forget(self, verdict: signature.Verdict) -> None:
        """The push was not made durable (503): its nonce may come again."""
        self.verifier.forget(verdict[3])
