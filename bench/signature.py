"""The push verifier alone: CPU per push of :class:`voicecall.ingress.signature.Verifier` (goal ≤ 10 µs), side by
side with the least any verifier does (one HMAC-SHA256 and a constant-time compare of the decoded digest).

Rounds alternate; each measures ``--pushes`` fresh signed pushes (every nonce new, so each valid push is also
remembered in the nonce cache, which is full and evicting from the second round on) with ``time.process_time``:

- valid:    a signed push, newline form, one secret (the usual case)
- rotating: the app lists two secrets and the push is signed with the second, in the older concat form: the
            first push takes 4 HMACs, then the verifier tries that secret and form first (as after a real
            rotation), so this measures what a rotation costs once it has been seen, not the 4-HMAC worst case
- digest:   a wrong digest, two secrets (4 HMACs, then refused)
- absent:   no X-AKSK header
- minimum:  hmac.digest + compare_digest on the newline message (the baseline)

    .venv/bin/python bench/signature.py [--rounds 5] [--pushes 50000]
"""

from __future__ import annotations

import argparse
import base64
import hmac
import statistics
import time
from collections.abc import Callable

from voicecall.ingress.signature import Verifier
from voicecall.simulator.signing import x_aksk

URL = "https://sp.example.com/notify/fee"
GOAL_US = 10.0


def headers(count: int, secret: str, form: str = "newline") -> list[str]:
    return [x_aksk(URL, "app", secret, form) for _ in range(count)]


def per_push(run: Callable[[list[str]], None], values: list[str]) -> float:
    started = time.process_time()
    run(values)
    return (time.process_time() - started) * 1e6 / len(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pushes", type=int, default=50_000)
    args = parser.parse_args()
    apps = {"app": ("secret-one", "secret-two")}
    single = {"app": ("secret-one",)}
    # the default cap of VOICECALL_INGRESS_SIGNATURE_NONCES: full (and evicting) from the second round on
    verifier = Verifier(lambda: single, 300.0, 100_000)
    rotating = Verifier(lambda: apps, 300.0, 100_000)

    def verify_all(check: Verifier) -> Callable[[list[str]], None]:
        def run(values: list[str]) -> None:
            now = time.time()
            verify = check.verify
            for value in values:
                verify(value, URL, now)
        return run

    def minimum(values: list[str]) -> None:
        for value in values:
            nonce, created = value.split('Nonce="')[1].split('"')[0], value.split('Created="')[1].split('"')[0]
            expected = base64.b64decode(value.split('PasswordDigest="')[1].split('"')[0])
            hmac.compare_digest(hmac.digest(b"secret-one", f"{URL}\n{nonce}\n{created}".encode(), "sha256"),
                                expected)

    def absent(values: list[str]) -> None:
        now = time.time()
        verify = verifier.verify
        for _ in values:
            verify(None, URL, now)

    results: dict[str, list[float]] = {name: [] for name in ("valid", "rotating", "digest", "absent", "minimum")}
    for round_ in range(args.rounds):
        cases = {
            "valid": (verify_all(verifier), headers(args.pushes, "secret-one")),
            "rotating": (verify_all(rotating), headers(args.pushes, "secret-two", "concat")),
            "digest": (verify_all(rotating), headers(args.pushes, "wrong")),
            "absent": (absent, headers(args.pushes, "secret-one")),
            "minimum": (minimum, headers(args.pushes, "secret-one")),
        }
        for name, (run, values) in cases.items():
            results[name].append(per_push(run, values))
        print(f"round {round_ + 1}: " + "  ".join(f"{name} {values[-1]:.2f} µs" for name, values in results.items()),
              flush=True)
    print(f"\n{'case':<10}{'median µs/push':>16}{'rounds ≤ 10 µs':>16}")
    for name, values in results.items():
        met = sum(value <= GOAL_US for value in values)
        print(f"{name:<10}{statistics.median(values):>16.2f}{met:>11}/{len(values)}")
    ratio = statistics.median(results["valid"]) / statistics.median(results["minimum"])
    print(f"\nvalid / minimum = {ratio:.2f} (the verifier's parsing, skew, cache and bookkeeping over one bare HMAC)")
    print(f"nonces remembered: {len(verifier.nonces)} (cap 100000)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
