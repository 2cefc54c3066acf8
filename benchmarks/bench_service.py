"""Requests per second of `vplink serve` on this machine's loopback, with 1 and with 8 concurrent clients.

    python3 benchmarks/bench_service.py [--store STORE] [--data ../shared/data] [--clients 8]
        [--requests 48] [--max-seconds 120] [--out runs/bench_service.json]

Starts the real `vplink serve` command on a free loopback port, waits for /health, then runs two
workloads, each bounded by a request count and a time limit (whichever comes first):

* photo: upload ../shared/data/people/images/two_people.jpg with the left or the right box and the caption
  "Barack Obama and Joe Biden" (every evidence tool runs; the right person must be in the top 5);
* text: text-only WikiMEL dev mentions (retrieval only).

Without --store it indexes a small real slice of the WikiMEL KB (the people of the photos, the gold
entities of the first dev mentions and 250 others) into a temporary folder first. No model server is
used: the numbers are the service's own overhead plus evidence and retrieval. Writes JSON (numbers,
versions, machine load) and prints a summary. Timings are wall-clock on whatever else the machine is
doing: the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vplink.core.jsonl import read_jsonl, write_json, write_jsonl  # noqa: E402
from vplink.core.provenance import provenance  # noqa: E402
from vplink.service.server import vplink_command  # noqa: E402

CAPTION = "Barack Obama and Joe Biden"
BOXES = [("0,0,250,301", "Q76"), ("256,0,512,301", "Q6279")]  # ../shared/data/people/photos.jsonl
PEOPLE = ["Q76", "Q6279", "Q357607", "Q461132", "Q1646482"]


def build_store(data: Path, folder: Path) -> str:
    """Index a small real slice of the WikiMEL KB (the people, 20 dev golds, 250 others) into ``folder``."""
    from vplink.retrieval.kb import load_kb
    from vplink.retrieval.store import KBStore
    from vplink.retrieval.text_encoder import TextEncoder

    kb = read_jsonl(data / "wikimel" / "kb.jsonl")
    wanted = set(PEOPLE) | {row["answer"] for row in read_jsonl(data / "wikimel" / "dev.jsonl")[:20]}
    rows = [e for e in kb if e["id"] in wanted] + [e for e in kb if e["id"] not in wanted][:250]
    write_jsonl(folder / "kb.jsonl", rows)
    KBStore(folder / "store").index(load_kb(folder / "kb.jsonl").entities, TextEncoder(), progress=False)
    return str(folder / "store")


def start_server(store: str, log: Path, extra: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """`vplink serve` (with ``extra`` options) on a free loopback port, answering /health; returns the process
    and its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with log.open("wb") as out:
        process = subprocess.Popen([*vplink_command(), "serve", "--store", store, "--port", str(port), *extra],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"vplink serve exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    sys.exit(f"vplink serve did not answer within 300 s; see {log}")


def photo_requests(data: Path) -> list[dict]:
    photo = (data / "people" / "images" / "two_people.jpg").read_bytes()
    return [{"files": {"image": ("two_people.jpg", photo, "image/jpeg")}, "data": {"box": box, "text": CAPTION},
             "expect": person} for box, person in BOXES]


def text_requests(data: Path) -> list[dict]:
    return [{"data": {"text": row["text"], "mention": row["mention"]}, "expect": row["answer"]}
            for row in read_jsonl(data / "wikimel" / "dev.jsonl")[:20]]


def load(url: str, requests: list[dict], clients: int, count: int, max_seconds: float) -> dict:
    """``clients`` threads send requests (cycling through ``requests``) until ``count`` are done or time is up."""
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    failures: list[str] = []
    top5 = 0
    stop_at = time.monotonic() + max_seconds

    def worker() -> None:
        nonlocal issued, top5
        with httpx.Client(base_url=url, timeout=max(60.0, max_seconds)) as http:
            while True:
                with lock:
                    if issued >= count or time.monotonic() >= stop_at:
                        return
                    request = requests[issued % len(requests)]
                    issued += 1
                started = time.perf_counter()
                try:
                    answer = http.post("/link", files=request.get("files"), data=request["data"])
                    ok = answer.status_code == 200
                    found = ok and request["expect"] in [e["id"] for e in answer.json()["ranking"][:5]]
                    problem = None if ok else f"HTTP {answer.status_code}: {answer.text[:200]}"
                except httpx.HTTPError as error:
                    found, problem = False, f"{type(error).__name__}: {error}"
                spent = time.perf_counter() - started
                with lock:
                    latencies.append(spent)
                    top5 += bool(found)
                    if problem:
                        failures.append(problem)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ordered = sorted(latencies)
    return {"clients": clients, "requests": len(latencies), "failures": len(failures),
            "failure_examples": failures[:3], "expected_in_top5": top5, "wall_s": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 3) if wall else None,
            "latency_mean_ms": round(1000 * statistics.fmean(ordered), 1) if ordered else None,
            "latency_median_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
            "latency_p90_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1)
            if ordered else None,
            "stopped_by": "count" if len(latencies) >= count else "time"}


def load_options(description: str, *, requests: tuple[int, str], max_seconds: tuple[float, str],
                 out: str) -> argparse.Namespace:
    """The options of a load on the service: store, data, clients, requests and time limit (default, help), output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--store", help="an existing store (default: index a small WikiMEL slice first)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=requests[0], help=requests[1])
    parser.add_argument("--max-seconds", type=float, default=max_seconds[0], help=max_seconds[1])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / out)
    return parser.parse_args()


def main() -> None:
    args = load_options(__doc__.splitlines()[0], requests=(48, "requests per workload and concurrency"),
                        max_seconds=(120.0, "time limit per workload and concurrency"), out="bench_service.json")

    with tempfile.TemporaryDirectory(prefix="vplink-bench-") as scratch:
        store = args.store or build_store(args.data, Path(scratch))
        process, url = start_server(store, Path(scratch) / "serve.log")
        try:
            health = httpx.get(f"{url}/health", timeout=10).json()
            workloads = {"photo": photo_requests(args.data), "text": text_requests(args.data)}
            for requests in workloads.values():  # warm up: the first request loads the evidence models
                for request in requests[:2]:
                    httpx.post(f"{url}/link", files=request.get("files"), data=request["data"], timeout=300)
            start_load = os.getloadavg()[0]
            results = {}
            for name, requests in workloads.items():
                for clients in (1, args.clients):
                    results[f"{name}_c{clients}"] = load(url, requests, clients, args.requests, args.max_seconds)
                    row = results[f"{name}_c{clients}"]
                    print(f"{name:5} clients={clients}: {row['requests']} requests in {row['wall_s']:.1f} s = "
                          f"{row['requests_per_s']:.2f} req/s; median {row['latency_median_ms']:.0f} ms, "
                          f"p90 {row['latency_p90_ms']:.0f} ms; {row['failures']} failures; "
                          f"expected entity in top 5: {row['expected_in_top5']}/{row['requests']}")
        finally:
            process.terminate()
            process.wait(timeout=30)
    import fastapi
    import uvicorn

    write_json(args.out, {
        "what": "vplink serve on loopback, no model server; POST /link with uploads (photo) or text only (text)",
        "results": results, "store": {"location": args.store or "temporary WikiMEL slice",
                                      "entities": health["store"].get("entities")},
        "provenance": provenance(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_start": round(start_load, 2),
                    "load_average_end": round(os.getloadavg()[0], 2)},
        "versions": {"python": platform.python_version(), "fastapi": fastapi.__version__,
                     "uvicorn": uvicorn.__version__, "text_encoder": health["encoders"]["text"]},
        "limits": {"requests": args.requests, "max_seconds": args.max_seconds},
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
