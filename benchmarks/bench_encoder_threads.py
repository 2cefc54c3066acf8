"""The OpenVINO text encoder from 1, 4 and 8 threads: the request pool it ships with against the alternatives.

    python3 benchmarks/bench_encoder_threads.py [--batches 300] [--repeat 2] [--out runs/encoder_threads.json]

Real KB texts (WikiMEL names and descriptions) in seeded batches of 1-16, the same batches for every strategy,
split across the threads. Strategies, alternating so that a busy spell of a shared machine hits each:

* pool: the runner as shipped, requests made once when it is built and lent to one caller at a time;
* per-call: a request made (and dropped) on every call, as before issue 20 (`eval --batch-size 8` hung in it);
* per-thread: one request per calling thread, made on its first call.

Each run is bounded: threads still encoding after --limit-s count the run as stuck. Writes JSON with the wall
and CPU seconds, batches per second, the CPU model and flags and the git commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vplink.core.jsonl import write_json  # noqa: E402
from vplink.core.provenance import provenance  # noqa: E402
from vplink.retrieval.text_encoder import TextEncoder  # noqa: E402

THREADS = (1, 4, 8)


class PerCall:
    """A request made for every call (the runner before issue 20)."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled

    def __call__(self, feed):
        return self.compiled.create_infer_request().infer(feed)[self.compiled.output(0)]


class PerThread:
    """One request per calling thread, made on its first call."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self.local = threading.local()

    def __call__(self, feed):
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        return request.infer(feed)[self.compiled.output(0)]


def texts(data: Path, count: int = 400) -> list[str]:
    """Real entity texts of varied lengths, as the store embeds them."""
    out = []
    with open(data / "wikimel" / "kb.jsonl", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            out += [row["name"], row.get("description") or row["name"]]
            if len(out) >= count:
                return out
    return out


def run(encoder: TextEncoder, batches: list[list[str]], threads: int, limit_s: float) -> dict[str, Any]:
    """Encode every batch, split across ``threads``; wall and CPU seconds, or stuck when over the limit."""
    errors: list[str] = []

    def work(mine: list[list[str]]) -> None:
        try:
            for batch in mine:
                encoder.encode(batch)
        except Exception as error:  # noqa: BLE001 - reported in the result
            errors.append(f"{type(error).__name__}: {error}")

    workers = [threading.Thread(target=work, args=(batches[i::threads],), daemon=True) for i in range(threads)]
    cpu_start, started = os.times(), time.perf_counter()
    for worker in workers:
        worker.start()
    ends = time.monotonic() + limit_s
    for worker in workers:
        worker.join(max(0.0, ends - time.monotonic()))
    wall, cpu_end = time.perf_counter() - started, os.times()
    stuck = sum(worker.is_alive() for worker in workers)
    return {"threads": threads, "wall_s": round(wall, 3),
            "cpu_s": round(cpu_end.user + cpu_end.system - cpu_start.user - cpu_start.system, 2),
            "batches_per_s": None if stuck else round(len(batches) / wall, 1), "stuck_threads": stuck,
            "errors": errors[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--limit-s", type=float, default=120.0, help="a run still encoding after this is stuck")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "encoder_threads.json")
    args = parser.parse_args()

    measured_on = provenance()  # the tree and the CPU the numbers come from
    pool_of = texts(args.data)
    rng = random.Random(0)
    batches = [pool_of[start:start + rng.randint(1, 16)] for start in
               (rng.randrange(len(pool_of) - 16) for _ in range(args.batches))]
    encoder = TextEncoder(backend="openvino")
    encoder.encode(batches[0])  # export/compile once
    shipped = encoder.onnx.runner
    strategies = {"pool": shipped, "per-call": PerCall(shipped.compiled), "per-thread": PerThread(shipped.compiled)}
    load_start = os.getloadavg()
    runs: list[dict[str, Any]] = []
    plan = [(repeat, threads, name) for repeat in range(args.repeat) for threads in THREADS for name in strategies]
    for repeat, threads, name in plan:
        encoder.onnx.runner = strategies[name]
        row = {"strategy": name, "repeat": repeat, **run(encoder, batches, threads, args.limit_s)}
        runs.append(row)
        print(json.dumps(row), flush=True)
        if row["stuck_threads"]:
            break  # stuck threads still hold the encoder: later runs would measure nothing
    import openvino

    write_json(args.out, {
        "what": "OpenVINO text encoder (float32) from several threads: request strategies on the same batches",
        **measured_on, "machine": {"platform": platform.platform(),
                                "load_average_start": round(load_start[0], 2),
                                "load_average_end": round(os.getloadavg()[0], 2)},
        "versions": {"python": platform.python_version(), "openvino": openvino.__version__},
        "text_encoder": encoder.name, "batches": args.batches, "batch_sizes": "1-16, seeded",
        "runs": runs})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
