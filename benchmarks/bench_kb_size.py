"""How `retrieve`'s search grows with the KB: exact search over the memory-mapped snapshot against Chroma's HNSW.

    python benchmarks/bench_kb_size.py --store stores/wikimel [--sizes 20000 100000 500000] [--queries 200] \
        [--out benchmarks/results/kb_size.json]

For the speed part only, KBs larger than WikiMEL's 18,880 entities are made from its real vectors: the first
18,880 rows are the store's own description vectors; every further row mixes one real entity's description
vector with another's name vector (0.7 / 0.3, normalised), so no two rows tie. The queries are WikiMEL dev
captions, encoded once with the store's text encoder. One view (description) is searched: `retrieve` searches two.

For each size, in a fresh process each (so memory is that method's own):

* exact: the matrix written as the snapshot writes it (``.npy``), opened memory-mapped as a reader opens a store,
  searched by ``KBStore._exact_batch`` one query at a time (p50, p95) and in one batch (queries/s);
* hnsw: the vectors upserted into a Chroma collection (cosine, Chroma's defaults) as `kb index` does, timed per
  1,000 entities; opened as a reader of a store without a snapshot does (a private copy, then Chroma), and queried
  for 2k as ``KBStore._query_hnsw`` does; recall@20 against the exact top 20.

The switch point is the size where exact search's p95 would reach ``--budget-ms`` (it grows linearly with the KB),
read off the largest size measured. Writes JSON with the CPU and commit (vplink.core.provenance) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
K = 20
DEPTH = 100  # retrieval's per-channel depth (FusionConfig.depth)


def rss_mb() -> float:
    """This process's resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20


def make_kb(base: np.ndarray, names: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` unit vectors: the real ones first, then mixtures of two real entities' vectors."""
    rng = np.random.default_rng(seed)
    extra = max(0, size - len(base))
    a, b = rng.integers(0, len(base), extra), rng.integers(0, len(base), extra)
    mixed = 0.7 * base[a] + 0.3 * names[b]
    out = np.concatenate([base[:size], mixed]).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(1000 * float(np.percentile(values, 50)), 3),
            "p95_ms": round(1000 * float(np.percentile(values, 95)), 3)}


def run_exact(work: Path, queries: np.ndarray) -> dict[str, Any]:
    """Open the memory-mapped matrix as a reader does and search it one query at a time, then in one batch."""
    from threadpoolctl import threadpool_limits

    from vplink.retrieval.store import KBStore

    threadpool_limits(1, user_api="blas")  # as KBStore.query runs it
    before = rss_mb()
    started = time.perf_counter()
    ids = json.loads((work / "ids.json").read_text())
    matrix = np.load(work / "vectors.npy", mmap_mode="r")
    opened = time.perf_counter() - started
    q64 = queries.astype(np.float64)
    times, tops = [], []
    for query in q64:
        t0 = time.perf_counter()
        rough = query[None, :].astype(np.float32) @ matrix.T
        found = KBStore._exact_batch(ids, matrix, query[None, :], rough, DEPTH)[0]
        times.append(time.perf_counter() - t0)
        tops.append([eid for eid, _ in found[:K]])
    t0 = time.perf_counter()
    KBStore._exact_batch(ids, matrix, q64, np.ascontiguousarray(queries @ matrix.T), DEPTH)
    batch_s = time.perf_counter() - t0
    return {"open_s": round(opened, 4), **percentiles(times), "batch_queries_per_s": round(len(q64) / batch_s, 1),
            "rss_growth_mb": round(rss_mb() - before, 1), "top": tops}


def index_hnsw(work: Path, vectors: np.ndarray) -> dict[str, Any]:
    """Upsert the vectors into a Chroma collection as `kb index` does (2,048 rows a write, a hash per row)."""
    import chromadb

    client = chromadb.PersistentClient(path=str(work / "chroma"))
    col = client.create_collection("kb-description", embedding_function=None,
                                   configuration={"hnsw": {"space": "cosine"}})
    step = min(2048, client.get_max_batch_size())
    started = time.perf_counter()
    for start in range(0, len(vectors), step):
        rows = range(start, min(start + step, len(vectors)))
        col.upsert(ids=[f"E{i:07d}" for i in rows], embeddings=vectors[start:start + step],
                   metadatas=[{"hash": f"{i:x}"} for i in rows])
    spent = time.perf_counter() - started
    return {"index_s": round(spent, 2), "index_s_per_1000": round(1000 * spent / len(vectors), 3)}


def run_hnsw(work: Path, queries: np.ndarray) -> dict[str, Any]:
    """Open the Chroma store as a reader without a snapshot does (copy, then client) and query it."""
    import chromadb

    before = rss_mb()
    started = time.perf_counter()
    copy = Path(tempfile.mkdtemp(prefix="vplink-store-"))
    try:
        shutil.copytree(work / "chroma", copy, dirs_exist_ok=True)
        col = chromadb.PersistentClient(path=str(copy)).get_collection("kb-description", embedding_function=None)
        col.query(query_embeddings=queries[:1], n_results=2 * DEPTH, include=["distances"])  # the index loads here
        opened = time.perf_counter() - started
        times, tops = [], []
        for query in queries:
            t0 = time.perf_counter()
            got = col.query(query_embeddings=query[None, :], n_results=2 * DEPTH, include=["distances"])
            times.append(time.perf_counter() - t0)
            ranked = sorted(zip(got["ids"][0], got["distances"][0]), key=lambda item: (round(1 - item[1], 6) * -1,
                                                                                        item[0]))
            tops.append([eid for eid, _ in ranked[:K]])
        return {"open_s": round(opened, 3), **percentiles(times), "rss_growth_mb": round(rss_mb() - before, 1),
                "top": tops}
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def child(args: argparse.Namespace) -> None:
    """One measurement in this process; prints its JSON."""
    work = Path(args.child_work)
    queries = np.load(work.parent / "queries.npy")
    if args.child == "exact":
        result = run_exact(work, queries)
    elif args.child == "index":
        result = index_hnsw(work, np.load(work / "vectors.npy"))
    else:
        result = run_hnsw(work, queries)
    print(json.dumps(result))


def measure(kind: str, work: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--child-work", str(work)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=ROOT / "stores" / "wikimel")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 500_000])
    parser.add_argument("--queries", type=int, default=200, help="WikiMEL dev captions used as queries")
    parser.add_argument("--budget-ms", type=float, default=50.0,
                        help="exact search's p95 per query and view allowed before HNSW takes over")
    parser.add_argument("--work", type=Path, default=ROOT / "stores" / "bench_kb_size")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kb_size.json")
    parser.add_argument("--child")
    parser.add_argument("--child-work")
    args = parser.parse_args()
    if args.child:
        return child(args)

    from vplink.core.jsonl import read_jsonl, write_json
    from vplink.core.provenance import provenance
    from vplink.retrieval.factory import open_retriever

    retriever = open_retriever(args.store)
    store = retriever.store
    if not store.reads_snapshot:
        sys.exit(f"error: {args.store} has no snapshot. Fix: re-run `vplink kb index KB.jsonl --store {args.store}`")
    _, base = store._matrix("description")
    _, names = store._matrix("name")
    captions = list(dict.fromkeys(row["text"] for row in read_jsonl(args.data / "wikimel" / "dev.jsonl")))
    queries = retriever.text_encoder.encode(captions[:args.queries])
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    np.save(args.work / "queries.npy", queries)
    out: dict[str, Any] = {"provenance": provenance(), "load_avg_start": os.getloadavg(),
                           "kb": "WikiMEL description vectors, recombined beyond 18,880 (speed only)",
                           "queries": len(queries), "k_recall": K, "depth": DEPTH, "budget_ms": args.budget_ms,
                           "sizes": {}}
    for size in args.sizes:
        work = args.work / str(size)
        work.mkdir()
        vectors = make_kb(np.asarray(base), np.asarray(names), size)
        started = time.perf_counter()
        np.save(work / "vectors.npy", vectors)
        (work / "ids.json").write_text(json.dumps([f"E{i:07d}" for i in range(size)]))
        write_s = time.perf_counter() - started
        del vectors
        exact = measure("exact", work)
        exact.update(snapshot_write_s_per_1000=round(1000 * write_s / size, 4),
                     disk_mb=round((work / "vectors.npy").stat().st_size / 2 ** 20 + (work / "ids.json").stat().st_size
                                   / 2 ** 20, 1))
        hnsw = measure("index", work)
        hnsw.update(measure("hnsw", work), disk_mb=round(disk_mb(work / "chroma"), 1))
        recall = np.mean([len(set(e) & set(h)) / K for e, h in zip(exact.pop("top"), hnsw.pop("top"))])
        hnsw["recall_at_20"] = round(float(recall), 4)
        out["sizes"][str(size)] = {"exact": exact, "hnsw": hnsw}
        print(f"{size:>7}: exact open {exact['open_s']} s, p50 {exact['p50_ms']} ms, p95 {exact['p95_ms']} ms, "
              f"{exact['disk_mb']} MB | hnsw index {hnsw['index_s_per_1000']} s/1000, open {hnsw['open_s']} s, "
              f"p50 {hnsw['p50_ms']} ms, p95 {hnsw['p95_ms']} ms, recall@20 {hnsw['recall_at_20']}, "
              f"{hnsw['disk_mb']} MB", flush=True)
        shutil.rmtree(work / "chroma", ignore_errors=True)
        write_json(args.out, out)
    largest = max(args.sizes)
    p95 = out["sizes"][str(largest)]["exact"]["p95_ms"]
    out["switch_point_entities"] = int(largest * args.budget_ms / p95)
    out["load_avg_end"] = os.getloadavg()
    write_json(args.out, out)
    print(f"exact p95 reaches {args.budget_ms} ms at ~{out['switch_point_entities']:,} entities; wrote {args.out}")


if __name__ == "__main__":
    main()
