#!/usr/bin/env python3
"""Bounded HTTP load generator: a steady request rate to a list of URLs, JSON summary at the end.

    python3 loadgen.py --url https://stet-prod-lb/health --rate 20 --duration 120
            [--stop-file /tmp/stop] [--header-file headers.txt] [--cafile root.pem]
            [--write-url https://stet-prod-lb/v1/corrections --write-body body.json
             --write-rate 1 --ack-file acked.jsonl] [--log-file requests.jsonl]

A standalone program (standard library only): the tests' Load (molecule/shared/e2e.py)
copies it into the client host and runs it there with python3.

Requests are sent at --rate per second (open loop: a slow answer does not slow the sender)
until --duration seconds have passed or --stop-file appears, whichever comes first. Only
loopback and private addresses (test containers) are accepted as targets; each target's
name is resolved once, at start, so the load does not depend on the client's resolver.
Headers carrying secrets come from --header-file ("Name: value" lines) so they never
appear in argv.

Writes (optional): POSTs of the JSON in --write-body to --write-url at --write-rate per
second, alongside the reads. Every string in the body has "{seq}" replaced by the write's
sequence number, so each write can carry its own idempotency key. A write is acknowledged
when its status is in --write-expect and its JSON answer names a correction_id; each
acknowledgement is appended to --ack-file as it arrives ({"seq", "status", "correction_id",
"acked_at": epoch seconds}),
so the file holds what the service promised to keep even if this process is killed.
--log-file gets one line per request ({"kind", "started", "finished", "status"}, epoch
seconds), from which an outage's start and end can be read.

A 429 (rate limited) is counted apart, as "rate_limited", not as a failure.
Exit status: 0 when every other request got an expected status, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import math
import os
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

MAX_DURATION_SECONDS = 1800
MAX_RATE = 500
# Writes are few and every one is kept: the API allows 100 writes/min per key by default.
MAX_WRITE_RATE = 20
# Enough threads that requests never queue: at most rate x timeout are in flight at once
# (a queue would turn an outage into a backlog sent late, no longer at the set rate).
MIN_WORKERS = 16
MAX_WORKERS = 512
RATE_LIMITED = "429"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", required=True, help="target URL (repeat for several)")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second (default 10)")
    parser.add_argument("--duration", type=float, required=True, help=f"seconds (<= {MAX_DURATION_SECONDS})")
    parser.add_argument("--stop-file", help="stop as soon as this file exists")
    parser.add_argument("--header-file", help='file of "Name: value" lines sent with every request')
    parser.add_argument("--cafile", help="PEM bundle that verifies the servers' certificates")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument("--expect", default="200", help="statuses counted as ok (default 200)")
    parser.add_argument("--write-url", help="POST target of the writes (none: reads only)")
    parser.add_argument("--write-body", help='JSON template of a write; "{seq}" in strings is replaced')
    parser.add_argument("--write-rate", type=float, default=1.0, help="writes per second (default 1)")
    parser.add_argument("--write-expect", default="201,200", help="write statuses counted as ok")
    parser.add_argument("--ack-file", help="append one JSON line per acknowledged write")
    parser.add_argument("--log-file", help="append one JSON line per request (timing and status)")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= MAX_DURATION_SECONDS:
        parser.error(f"--duration must be in (0, {MAX_DURATION_SECONDS}]")
    if not 0 < args.rate <= MAX_RATE:
        parser.error(f"--rate must be in (0, {MAX_RATE}]")
    if not 0 < args.write_rate <= MAX_WRITE_RATE:
        parser.error(f"--write-rate must be in (0, {MAX_WRITE_RATE}]")
    if bool(args.write_url) != bool(args.write_body):
        parser.error("--write-url and --write-body go together")
    if args.ack_file and not args.write_url:
        parser.error("--ack-file needs --write-url")
    args.addresses = {}
    for url in args.url + ([args.write_url] if args.write_url else []):
        try:
            host, address = resolve_target(url)
        except ValueError as exc:
            parser.error(f"{url}: {exc}")
        args.addresses[host] = address
    if args.write_body:
        try:
            with open(args.write_body, encoding="utf-8") as body:
                args.write_template = json.load(body)
        except (OSError, ValueError) as exc:
            parser.error(f"--write-body {args.write_body}: {exc}")
    return args


def resolve_target(url: str) -> tuple[str, str]:
    """The URL's host name and the one address it is sent to; raises ValueError when the URL
    is not a test target (loopback or a private address)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("only http(s) URLs with a host")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {parts.hostname}: {exc}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not (ip.is_loopback or ip.is_private):
            raise ValueError(f"{parts.hostname} resolves to {ip}, not a loopback or private (test) address")
    return parts.hostname, infos[0][4][0]


def pin_addresses(addresses: dict[str, str]) -> None:
    """Make every later lookup of these host names return the address found at start.

    The load measures the service, not the client's resolver: in the test hosts names are
    answered by Docker's embedded DNS, which lags while the Docker daemon is busy running
    Ansible's tasks, and a lookup timing out there would count as a failed request. TLS
    still checks the certificate against the host name of the URL."""
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return resolve(addresses.get(host, host), *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def read_headers(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    headers = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            name, sep, value = line.partition(":")
            if sep and name.strip():
                headers[name.strip()] = value.strip()
    return headers


def fill_template(template, seq: int):
    """The write body for one sequence number: "{seq}" replaced in every string."""
    if isinstance(template, str):
        return template.replace("{seq}", str(seq))
    if isinstance(template, list):
        return [fill_template(item, seq) for item in template]
    if isinstance(template, dict):
        return {key: fill_template(value, seq) for key, value in template.items()}
    return template


class Tally:
    """Counts shared by the sender threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()
        self.latencies: list[float] = []
        self.ok = 0
        self.rate_limited = 0

    def record(self, outcome: str, is_ok: bool, seconds: float) -> None:
        with self.lock:
            self.statuses[outcome] += 1
            self.latencies.append(seconds)
            if is_ok:
                self.ok += 1
            elif outcome == RATE_LIMITED:
                self.rate_limited += 1
            else:
                self.failures[outcome] += 1


class JsonLines:
    """An append-only file of JSON lines, written whole and flushed line by line."""

    def __init__(self, path: str | None) -> None:
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        line = json.dumps(record, sort_keys=True) + "\n"
        with self.lock:
            self.file.write(line)
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def send(
    url: str, headers: dict[str, str], context: ssl.SSLContext, timeout: float, body: bytes | None = None
) -> tuple[str, bytes]:
    """One request (a POST when body is given); returns the HTTP status, or the kind of
    error when there was none, and the answer's body."""
    if body is not None:
        headers = {**headers, "Content-Type": "application/json"}
    # The scheme was checked in resolve_target: http or https only.
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return str(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return str(exc.code), b""
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"error:{type(reason).__name__}", b""


def correction_id_of(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    value = answer.get("correction_id") if isinstance(answer, dict) else None
    return value if isinstance(value, str) and value else None


def workers_for(rate: float, timeout: float) -> int:
    return min(MAX_WORKERS, max(MIN_WORKERS, math.ceil(rate * timeout) + 2))


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return round(sorted_values[index] * 1000, 1)


def run(args: argparse.Namespace) -> dict:
    pin_addresses(args.addresses)
    headers = read_headers(args.header_file)
    context = ssl.create_default_context(cafile=args.cafile)
    expected = {status.strip() for status in args.expect.split(",")}
    write_expected = {status.strip() for status in args.write_expect.split(",")}
    tally = Tally()
    writes = Tally()
    acked = JsonLines(args.ack_file)
    log = JsonLines(args.log_file)
    acknowledged = collections.Counter()

    def one_request(url: str) -> None:
        started, wall = time.monotonic(), time.time()
        outcome, _ = send(url, headers, context, args.timeout)
        seconds = time.monotonic() - started
        tally.record(outcome, outcome in expected, seconds)
        log.write(
            {
                "kind": "read",
                "started": round(wall, 3),
                "finished": round(wall + seconds, 3),
                "status": outcome,
            }
        )

    def one_write(seq: int) -> None:
        body = json.dumps(fill_template(args.write_template, seq)).encode()
        started, wall = time.monotonic(), time.time()
        outcome, answer = send(args.write_url, headers, context, args.timeout, body)
        seconds = time.monotonic() - started
        correction_id = correction_id_of(answer) if outcome in write_expected else None
        # An expected status without an id is no acknowledgement: counted as a failure.
        is_ok = correction_id is not None
        tally.record(outcome, is_ok, seconds)
        writes.record(outcome, is_ok, seconds)
        if is_ok:
            with writes.lock:
                acknowledged["count"] += 1
            acked.write(
                {
                    "seq": seq,
                    "status": outcome,
                    "correction_id": correction_id,
                    "acked_at": round(wall + seconds, 3),
                }
            )
        log.write(
            {
                "kind": "write",
                "seq": seq,
                "started": round(wall, 3),
                "finished": round(wall + seconds, 3),
                "status": outcome,
            }
        )

    reads_sent = writes_sent = 0
    write_rate = args.write_rate if args.write_url else 0.0
    started = time.monotonic()
    deadline = started + args.duration
    stopped_by = "duration"
    readers = ThreadPoolExecutor(max_workers=workers_for(args.rate, args.timeout))
    writers = ThreadPoolExecutor(max_workers=workers_for(write_rate, args.timeout))
    with readers, writers:
        while time.monotonic() < deadline:
            if args.stop_file and os.path.exists(args.stop_file):
                stopped_by = "stop_file"
                break
            # Open loop: the n-th read is due at n / rate and the n-th write at n / write rate,
            # whatever the answers took; whichever is due first goes next.
            read_due = started + reads_sent / args.rate
            write_due = started + writes_sent / write_rate if write_rate else float("inf")
            time.sleep(max(0.0, min(read_due, write_due) - time.monotonic()))
            if time.monotonic() >= deadline:
                break
            if write_due < read_due:
                writers.submit(one_write, writes_sent)
                writes_sent += 1
            else:
                readers.submit(one_request, args.url[reads_sent % len(args.url)])
                reads_sent += 1
    acked.close()
    log.close()
    latencies = sorted(tally.latencies)
    sent = reads_sent + writes_sent
    summary = {
        "sent": sent,
        "ok": tally.ok,
        "failed": sent - tally.ok - tally.rate_limited,
        "rate_limited": tally.rate_limited,
        "statuses": dict(tally.statuses),
        "failures": dict(tally.failures),
        "seconds": round(time.monotonic() - started, 1),
        "stopped_by": stopped_by,
        "rate_per_second": args.rate,
        "latency_ms": {
            "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95),
            "max": percentile(latencies, 1.0),
        },
    }
    if args.write_url:
        summary["writes"] = {
            "sent": writes_sent,
            "acknowledged": acknowledged["count"],
            "failed": writes_sent - writes.ok - writes.rate_limited,
            "rate_limited": writes.rate_limited,
            "statuses": dict(writes.statuses),
            "rate_per_second": args.write_rate,
        }
    return summary


def main(argv: list[str]) -> int:
    summary = run(parse_args(argv))
    print(json.dumps(summary, sort_keys=True))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
