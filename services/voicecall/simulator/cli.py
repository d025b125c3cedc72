"""``voicecall simulate``: run the simulated platform against an ingress.

Exit status: 0 when the run ended by itself (``--calls``/``--duration`` done) and the receiver accepted everything,
4 when it ended by itself and the receiver lost data (status events not answered 200, or CDRs given up after the
last re-push), 0 after SIGTERM/SIGINT whatever was lost (like every long-running ``voicecall`` command; the
summary still reports the losses), 1 on a crash, 2 on bad arguments. Records still waiting for a re-push when
stopped are reported as pending and do not count as lost, nor do CDRs withheld on purpose (--lost-cdr-share).

The summary reconciles with what the receiver stored: status pushes per event (late, duplicated), the fate of every
CDR, the calls that should end `missing` on the receiver and from when (their disconnect + --cdr-grace, by the
receiver's clock: give the calls stage the same VOICECALL_CALLS_CDR_GRACE), the signatures sent by kind, and the
recordings by why they are or are not on recording.stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from pydantic import Field

from voicecall import huawei
from voicecall.apps import Apps, load_apps_file
from voicecall.runtime import config, lifecycle, logging as vlog
from voicecall.simulator import signing
from voicecall.simulator.model import DEFAULT_APP_KEY, parse_mix
from voicecall.simulator.platform import Platform, random_seed, resolve_apps
from voicecall.simulator.pushes import REPUSH_BODIES
from voicecall.simulator.recording_api import RecordingApi
from voicecall.simulator.summary import Summary

EXIT_LOST = 4


class SimulateSettings(config.CommonSettings):
    """The apps and the CDR grace default to the pipeline's own settings, so that ``voicecall dev`` gives the
    simulator and the services the same ones."""

    huawei_app_key: str = Field(DEFAULT_APP_KEY, min_length=1,
                                description="app key of the single app (calls, pushes, recording API)")
    huawei_app_secret: str | None = Field(None, min_length=1, repr=False,
                                          description="its secret; when given, pushes are signed by default")
    huawei_apps_file: str | None = Field(None, min_length=1,
                                         description='more apps: JSON {"<appKey>": "<secret>" | ["<s1>", "<s2>"]}')
    calls_cdr_grace: config.Duration = Field(7 * 3600.0, ge=0,
                                             description="the calls stage's grace before a CDR counts as missing")


def _duration(text: str) -> float:
    try:
        return config.parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _size(text: str) -> int:
    try:
        return config.parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _mix(text: str) -> dict[str, float]:
    try:
        return parse_mix(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a share is between 0 and 1")
    return value


def _host_port(text: str) -> tuple[str, int]:
    try:
        return config.parse_address(text, default_host="127.0.0.1")
    except ValueError:
        raise argparse.ArgumentTypeError("use HOST:PORT, e.g. 127.0.0.1:18080") from None


def parse_start_time(text: str) -> datetime:
    """``2026-01-01T00:00:00Z``, ``2026-01-01 00:00:00`` (UTC) or any ISO 8601 time with an offset."""
    try:
        moment = huawei.parse_time(text)
    except huawei.BadTime:
        moment = None
    if moment is None:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a time: {text!r} (use 2026-01-01T00:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("\n\n", 1)[1] if __doc__ else None
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    target = parser.add_argument_group("where to push")
    target.add_argument("--status-url", help="URL for status pushes (callout/alerting/answer/collectInfo/disconnect)")
    target.add_argument("--fee-url", help="URL for fee (CDR) pushes")
    target.add_argument("--notify-url", help="one URL for both kinds (the ingress's /notify)")
    load = parser.add_argument_group("what to simulate")
    load.add_argument("--rate", type=float, default=10.0, help="calls started per simulated second (default 10)")
    bound = load.add_mutually_exclusive_group()
    bound.add_argument("--calls", type=int, help="number of calls, then finish")
    bound.add_argument("--duration", type=_duration,
                       help="simulated time over which calls start, e.g. 10m; 0 = until stopped (default)")
    load.add_argument("--seed", type=int, help="same seed and start time → the same calls (default: random)")
    load.add_argument("--start-time", type=parse_start_time,
                      help="simulated time of the first call, UTC (default: now)")
    load.add_argument("--mix", type=_mix, default=None,
                      help="scenario weights (default callback=0.6,notify=0.3,verify=0.1)")
    load.add_argument("--speed", type=float, default=1.0,
                      help="simulated seconds per wall second (default 1, real time; 0 = as fast as possible)")
    load.add_argument("--record-share", type=_share, default=0.5, help="callbacks that ask for a recording")
    load.add_argument("--url-only-share", type=_share, default=0.1,
                      help="recorded CDRs that carry only recordFileDownloadUrl (no recordDomain)")
    load.add_argument("--missing-recordings", type=_share, default=0.0,
                      help="recorded CDRs whose file the recording API does not have (404 1012007)")
    load.add_argument("--recording-max-size", type=_size, default=1 << 20,
                      help="cap on a recording's size (default 1MiB; 0 = real size, 8000 bytes per second)")
    load.add_argument("--empty-times", action="store_true",
                      help='UNCONFIRMED form: times of legs that did not happen as "" instead of absent')
    load.add_argument("--single-leg-status", action="store_true",
                      help="UNCONFIRMED form: callback status events for leg A only (default: both legs)")
    load.add_argument("--double-space-share", type=_share, default=0.0,
                      help="share of calls whose times have two spaces between date and time (old platforms)")
    delivery = parser.add_argument_group("delivery")
    delivery.add_argument("--repush-interval", type=_duration, default=3600.0,
                          help="wait between fee re-pushes, wall clock (default 1h; e.g. 50ms in tests)")
    delivery.add_argument("--max-repushes", type=int, default=6, help="fee re-pushes before giving up (default 6)")
    delivery.add_argument("--repush-body", choices=REPUSH_BODIES, default="same",
                          help="re-pushes resend the same bytes (default), or the same records reordered, fields "
                               "too (UNCONFIRMED which the platform does)")
    delivery.add_argument("--out-of-order-share", type=_share, default=0.0,
                          help="share of status pushes (not a call's last) delivered after the call's next push")
    delivery.add_argument("--duplicate-share", type=_share, default=0.0,
                          help="share of status pushes delivered twice, concurrently")
    delivery.add_argument("--lost-cdr-share", type=_share, default=0.0,
                          help="share of calls whose CDR never arrives (the receiver \"was down\" for all re-pushes: "
                               "given up at once); those calls end missing on the receiver after the grace")
    delivery.add_argument("--cdr-grace", type=_duration, default=None,
                          help="the calls stage's grace (default $VOICECALL_CALLS_CDR_GRACE or 7h): the summary "
                               "says from when the calls without a CDR should show as missing")
    delivery.add_argument("--concurrency", type=int, default=64, help="pushes in flight at most (default 64)")
    delivery.add_argument("--timeout", type=_duration, default=10.0, help="per-push timeout (default 10s)")
    apps = parser.add_argument_group("apps and push signatures")
    apps.add_argument("--app-key", help=f"app key (default $VOICECALL_HUAWEI_APP_KEY or {DEFAULT_APP_KEY})")
    apps.add_argument("--app-secret", help="app secret (default $VOICECALL_HUAWEI_APP_SECRET; prefer the variable: "
                                           "a command line is visible to every user)")
    apps.add_argument("--apps-file", help="more apps, JSON {\"<appKey>\": \"<secret>\" | [\"<s1>\", \"<s2>\"]} "
                                          "(default $VOICECALL_HUAWEI_APPS_FILE); calls are spread over all apps")
    apps.add_argument("--sign-pushes", action=argparse.BooleanOptionalAction, default=None,
                      help="the documented Authorization/X-AKSK headers on pushes, signed with the call's app "
                           "(default: on when a secret or an apps file is given)")
    apps.add_argument("--push-digest", choices=signing.PUSH_DIGESTS, default="newline",
                      help="PasswordDigest message: url\\nnonce\\ncreated (newline, default), url+nonce+created "
                           "(concat), or nonce+created like the request-side APIs (request)")
    apps.add_argument("--push-signature", dest="push_digest", choices=signing.PUSH_DIGESTS,
                      default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # its former name
    apps.add_argument("--push-created", choices=signing.PUSH_CREATED_ZONES, default="utc",
                      help="time zone of Created in signed pushes: utc (default) or beijing (UTC+8, still written "
                           "with Z, as the push pages' text says; UNCONFIRMED)")
    apps.add_argument("--bad-signature-share", type=_share, default=0.0,
                      help="share of signed pushes whose digest is made with a wrong secret")
    apps.add_argument("--replayed-nonce-share", type=_share, default=0.0,
                      help="share of signed pushes that resend the X-AKSK of the app's previous push to that URL")
    apps.add_argument("--unsigned-share", type=_share, default=0.0,
                      help="share of pushes sent without signature headers while signing is on")
    recordings = parser.add_argument_group("recording API")
    recordings.add_argument("--serve-recordings", type=_host_port, metavar="HOST:PORT",
                            help="serve the recording API and the files there (every app's files, each to its app)")
    recordings.add_argument("--recording-fail-first", type=int, default=0,
                            help="answer the first N requests per file with 503")
    recordings.add_argument("--recording-delay", type=_duration, default=0.0,
                            help="delay before every recording API answer")
    recordings.add_argument("--recording-fail-first-download", type=int, default=0,
                            help="answer the first N downloads per file with 503")
    recordings.add_argument("--recording-download-rate", type=_size, default=0,
                            help="bytes per second per download (default 0 = unlimited)")
    recordings.add_argument("--max-skew", type=_duration, default=300.0,
                            help="accepted distance between X-AKSK Created and now (default 5m)")
    recordings.add_argument("--linger", type=_duration, default=0.0,
                            help="keep serving recordings this long after the last push (default 0)")
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    output.add_argument("--progress-interval", type=_duration, default=None,
                        help="seconds between progress lines (default 1s on a terminal, 10s otherwise)")


def _validate(args: argparse.Namespace) -> str | None:
    if not args.notify_url and not (args.status_url and args.fee_url):
        return "give --status-url and --fee-url, or --notify-url"
    if args.rate <= 0:
        return "--rate must be positive"
    if args.calls is not None and args.calls < 0:
        return "--calls must be ≥ 0"
    if args.speed < 0:
        return "--speed must be ≥ 0"
    if args.bad_signature_share + args.replayed_nonce_share + args.unsigned_share > 1:
        return "--bad-signature-share, --replayed-nonce-share and --unsigned-share add up to more than 1"
    return None


def _printer(tty: bool) -> Callable[[Summary], None]:
    def show(summary: Summary) -> None:
        line = summary.progress_line()
        if tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return show


def load_apps(args: argparse.Namespace, settings: SimulateSettings) -> tuple[Apps, bool]:
    """The run's apps (the apps file's, then the single key/secret) and whether any secret was given."""
    path = args.apps_file or settings.huawei_apps_file
    apps = load_apps_file(path) if path else None
    return resolve_apps(apps, args.app_key or settings.huawei_app_key, args.app_secret or settings.huawei_app_secret)


async def simulate(args: argparse.Namespace, settings: SimulateSettings, stop: asyncio.Event,
                   apps: Apps, secret_given: bool) -> Summary:
    (app_key, secrets), *others = apps.items()
    api: RecordingApi | None = None
    if args.serve_recordings:
        host, port = args.serve_recordings
        api = RecordingApi(app_key, secrets[0], host, port, apps=dict(others), max_skew=args.max_skew,
                           fail_first=args.recording_fail_first, delay=args.recording_delay,
                           fail_first_download=args.recording_fail_first_download,
                           download_rate=args.recording_download_rate)
        await api.start()
        print(f"recording API on {api.base_url}", file=sys.stderr, flush=True)
    tty = sys.stderr.isatty()
    interval = args.progress_interval or (1.0 if tty else 10.0)
    seed = args.seed if args.seed is not None else random_seed()
    duration = args.duration if args.duration else None
    try:
        platform = Platform(
            args.status_url, args.fee_url, notify_url=args.notify_url, seed=seed, rate=args.rate, calls=args.calls,
            duration=duration, mix=args.mix, repush_interval=args.repush_interval, max_repushes=args.max_repushes,
            sign_pushes=secret_given if args.sign_pushes is None else args.sign_pushes,
            push_digest=args.push_digest, push_created_zone=args.push_created, repush_bodies=args.repush_body,
            apps=apps, bad_signature_share=args.bad_signature_share,
            replayed_nonce_share=args.replayed_nonce_share, unsigned_share=args.unsigned_share,
            late_share=args.out_of_order_share, duplicate_share=args.duplicate_share,
            lost_cdr_share=args.lost_cdr_share,
            cdr_grace=settings.calls_cdr_grace if args.cdr_grace is None else args.cdr_grace,
            recording_api=api, start_time=args.start_time, speed=args.speed,
            concurrency=args.concurrency, push_timeout=args.timeout, on_progress=_printer(tty),
            progress_interval=interval, record_share=args.record_share, url_only_share=args.url_only_share,
            missing_share=args.missing_recordings, recording_max_bytes=args.recording_max_size,
            empty_times=args.empty_times, per_leg_status=not args.single_leg_status,
            double_space_share=args.double_space_share)
        print(f"simulating: seed {seed}, start time {platform.summary.start_time}, rate {args.rate}/s, "
              f"speed {args.speed or 'max'}, apps {', '.join(apps)}, signing {platform.summary.signing}",
              file=sys.stderr, flush=True)
        summary = await platform.run(stop)
        if api is not None and args.linger and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.linger)
            platform.count_fetched()
    finally:
        if api is not None:
            await api.stop()
    if tty:
        print(file=sys.stderr)
    return summary


def main(args: argparse.Namespace) -> int:
    problem = _validate(args)
    if problem:
        print(f"voicecall simulate: {problem}", file=sys.stderr)
        return 2
    settings = config.load(SimulateSettings)
    vlog.setup(settings.log_level, settings.log_format)
    try:
        apps, secret_given = load_apps(args, settings)
    except ValueError as error:
        print(f"voicecall simulate: {error}", file=sys.stderr)
        return 2
    outcome: list[Summary] = []
    signalled: list[asyncio.Event] = []

    async def service(stop: asyncio.Event) -> None:
        signalled.append(stop)
        outcome.append(await simulate(args, settings, stop, apps, secret_given))

    code = lifecycle.run(service)
    if code != 0 or not outcome:
        return code or 1
    summary = outcome[0]
    if args.json:
        print(orjson.dumps(summary.as_dict()).decode(), flush=True)
    else:
        print(summary.text(), flush=True)
    stopped_by_signal = bool(signalled) and signalled[0].is_set()
    return EXIT_LOST if summary.lost and not stopped_by_signal else 0
