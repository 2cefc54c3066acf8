"""A bounded soak of `vplink serve` on loopback: N clients send M requests each, good and bad input mixed.

    python3 benchmarks/bench_soak.py [--clients 8] [--requests 30] [--max-seconds 1200]
        [--out benchmarks/results/soak.json]

Starts the real `vplink serve` on a free 127.0.0.1 port (with --request-timeout and a small --max-request-mb)
over a small real WikiMEL store, built as bench_service.py builds it. A warm-up first: as many clients as the
soak send every kind of request below once each (the first photo loads the evidence models; memory that grows
with the number of threads at work is taken then). The server's resident memory is read; then each client sends
its requests, cycling through the kinds from its own offset, and the memory is read again.

Every kind has the one status it must get: good input 200 (an upload, a picture by path, text only, a stream,
a 1 MB caption, HTML in a caption, an entity), bad input its 4xx (inverted, NaN and far-outside boxes, a path
out of the image root, a file that is no picture, an empty form, a body over the limit, an unknown entity).
Reported: answers by status and by kind, answers with another status than expected, requests that got no
answer at all (lost), latency p50/p95, the server's memory before and after. The CPU model and flags, the load
average and the git commit (with git_dirty) go into the JSON with them. Exits 1 when any answer was a 5xx, any
request was lost, or the server's memory grew by more than 10 %.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_service import BOXES, CAPTION, build_store, load_options, start_server  # noqa: E402
from vplink.core.provenance import provenance  # noqa: E402
from vplink.core.jsonl import read_jsonl, write_json  # noqa: E402

#: The server's limit on a request body: small, so that the over-limit request stays cheap to send.
MAX_REQUEST_MB = 4
REQUEST_TIMEOUT_S = 60
#: Memory growth over the soak above this share fails the run.
MAX_GROWTH = 0.10


@dataclass
class Kind:
    """One kind of request and the status it must get."""

    name: str
    expect: int
    method: str = "POST"
    path: str = "/link"
    data: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes, str]] | None = None


def kinds(data: Path) -> list[Kind]:
    """Good and bad requests, each with the status `vplink serve` must answer it with."""
    photo = (data / "people" / "images" / "two_people.jpg").read_bytes()
    (left, _), (right, _) = BOXES
    dev = read_jsonl(data / "wikimel" / "dev.jsonl")[0]
    upload = {"image": ("two_people.jpg", photo, "image/jpeg")}
    return [
        Kind("upload", 200, data={"box": left, "text": CAPTION}, files=upload),
        Kind("path", 200, data={"path": "two_people.jpg", "box": right, "text": CAPTION}),
        Kind("text", 200, data={"text": dev["text"], "mention": dev["mention"]}),
        Kind("stream", 200, path="/link/stream", data={"path": "two_people.jpg", "box": left, "text": CAPTION}),
        Kind("caption-1mb", 200, data={"text": "Barack Obama " * 80_000}),
        Kind("html-caption", 200, data={"text": "<script>alert(1)</script><img src=x onerror=alert(2)> Joe Biden"}),
        Kind("entity", 200, method="GET", path="/entities/Q76"),
        Kind("inverted-box", 422, data={"path": "two_people.jpg", "box": "300,10,200,100"}),
        Kind("nan-box", 422, data={"path": "two_people.jpg", "box": "nan,0,10,10"}),
        Kind("box-outside", 422, data={"path": "two_people.jpg", "box": "0,0,100000,100000"}),
        Kind("traversal", 403, data={"path": "../../../etc/passwd", "box": left}),
        Kind("not-a-picture", 422, files={"image": ("notes.jpg", b"these are notes, not a picture\n", "image/jpeg")}),
        Kind("empty-form", 422),
        Kind("too-large", 413, files={"image": ("big.jpg", b"\0" * (MAX_REQUEST_MB + 1) * 2**20, "image/jpeg")}),
        Kind("no-entity", 404, method="GET", path="/entities/no-such-id"),
    ]


def rss_mib(pid: int) -> float:
    """The resident memory of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def send(http: httpx.Client, kind: Kind) -> tuple[int | None, float, str | None]:
    """Send one request: its status (None when no answer came), seconds, and what was wrong with the answer."""
    started = time.perf_counter()
    try:
        answer = http.request(kind.method, kind.path, data=kind.data or None, files=kind.files)
    except httpx.HTTPError as error:
        return None, time.perf_counter() - started, f"{type(error).__name__}: {error}"
    spent = time.perf_counter() - started
    problem = None
    if answer.status_code != kind.expect:
        problem = f"HTTP {answer.status_code}, expected {kind.expect}: {answer.text[:200]}"
    elif kind.expect == 200 and kind.path == "/link/stream" and "event: result" not in answer.text:
        problem = f"the stream ended without a result: {answer.text[-200:]}"
    elif kind.expect == 200 and kind.path == "/link" and not answer.json().get("ranking"):
        problem = "an answer without a ranking"
    return answer.status_code, spent, problem


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def soak(url: str, mix: list[Kind], clients: int, per_client: int, max_seconds: float) -> dict[str, Any]:
    """``clients`` threads each send ``per_client`` requests, cycling through ``mix`` from their own offset."""
    lock = threading.Lock()
    rows: list[tuple[str, int | None, float, str | None]] = []
    stop_at = time.monotonic() + max_seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S + 60) as http:
            for index in range(per_client):
                if time.monotonic() >= stop_at:
                    return
                kind = mix[(offset + index) % len(mix)]
                status, spent, problem = send(http, kind)
                with lock:
                    rows.append((kind.name, status, spent, problem))

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(offset * 2,)) for offset in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    latencies = [spent * 1000 for _, status, spent, _ in rows if status is not None]
    by_kind = {}
    for kind in mix:
        mine = [(status, spent * 1000) for name, status, spent, _ in rows if name == kind.name]
        times = [ms for status, ms in mine if status is not None]
        by_kind[kind.name] = {"expect": kind.expect, "sent": len(mine),
                              "statuses": dict(Counter(str(status) for status, _ in mine)),
                              "p50_ms": _round(percentile(times, 0.5)), "p95_ms": _round(percentile(times, 0.95))}
    unexpected = [f"{name}: {problem}" for name, status, _, problem in rows if status is not None and problem]
    lost = [f"{name}: {problem}" for name, status, _, problem in rows if status is None]
    return {"sent": len(rows), "planned": clients * per_client, "wall_s": round(wall, 1),
            "answers_by_status": dict(sorted(Counter(str(status) for _, status, _, _ in rows
                                                      if status is not None).items())),
            "server_errors_5xx": sum(1 for _, status, _, _ in rows if status is not None and status >= 500),
            "unexpected": len(unexpected), "unexpected_examples": unexpected[:5],
            "lost": len(lost), "lost_examples": lost[:5],
            "latency_ms": {"p50": _round(percentile(latencies, 0.5)), "p95": _round(percentile(latencies, 0.95)),
                           "max": _round(max(latencies, default=None))},
            "by_kind": by_kind, "stopped_by": "count" if len(rows) == clients * per_client else "time"}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> None:
    args = load_options(__doc__.splitlines()[0], requests=(30, "requests per client"),
                        max_seconds=(1200.0, "time limit of the soak"), out="soak.json")

    measured_on = provenance()  # before anything is written: the tree the numbers come from, and the CPU
    load_start = os.getloadavg()
    mix = kinds(args.data)
    with tempfile.TemporaryDirectory(prefix="vplink-soak-") as scratch:
        store = args.store or build_store(args.data, Path(scratch))
        options = ["--image-root", str(args.data / "people" / "images"), "--max-request-mb", str(MAX_REQUEST_MB),
                   "--request-timeout", str(REQUEST_TIMEOUT_S)]
        process, url = start_server(store, Path(scratch) / "serve.log", options)
        try:
            warm = soak(url, mix, args.clients, len(mix), max_seconds=args.max_seconds)
            time.sleep(2)
            before = rss_mib(process.pid)
            result = soak(url, mix, args.clients, args.requests, args.max_seconds)
            time.sleep(2)
            after = rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    growth = after / before - 1
    import fastapi
    import uvicorn

    doc = {
        "what": "vplink serve on 127.0.0.1, no model server: clients x requests, good and bad input mixed",
        **measured_on,
        "machine": {"platform": platform.platform(), "load_average_start": round(load_start[0], 2),
                    "load_average_end": round(os.getloadavg()[0], 2)},
        "versions": {"python": platform.python_version(), "fastapi": fastapi.__version__,
                     "uvicorn": uvicorn.__version__},
        "server": {"options": options, "store": args.store or "temporary WikiMEL slice (bench_service.build_store)"},
        "clients": args.clients, "requests_per_client": args.requests, "max_seconds": args.max_seconds,
        "warm_up": {"sent": warm["sent"], "server_errors_5xx": warm["server_errors_5xx"], "lost": warm["lost"],
                    "unexpected": warm["unexpected"], "unexpected_examples": warm["unexpected_examples"]},
        "soak": result,
        "server_rss_mib": {"before": round(before, 1), "after": round(after, 1), "growth_pct": round(100 * growth, 2)},
    }
    doc["passed"] = (result["server_errors_5xx"] == 0 and result["lost"] == 0 and growth <= MAX_GROWTH
                     and result["sent"] == result["planned"])
    write_json(args.out, doc)
    print(f"{result['sent']}/{result['planned']} requests in {result['wall_s']} s by {args.clients} clients; "
          f"answers by status {result['answers_by_status']}; 5xx {result['server_errors_5xx']}; "
          f"lost {result['lost']}; unexpected {result['unexpected']}; p50 {result['latency_ms']['p50']} ms, "
          f"p95 {result['latency_ms']['p95']} ms; server memory {before:.0f} -> {after:.0f} MiB "
          f"({100 * growth:+.1f} %). Wrote {args.out}")
    for problem in result["unexpected_examples"] + result["lost_examples"]:
        print("  ", problem)
    sys.exit(0 if doc["passed"] else 1)


if __name__ == "__main__":
    main()
