"""Retrieval benchmark: recall@k per channel and fused, weight tuning on dev, query latency.

    python -m eval.bench_retrieval --store stores/wikimel --dataset ../shared/data/wikimel/dev.jsonl \
        --out eval/results/retrieval_dev.json [--tune] [--server]

Prints a table with each row's ratio to the baseline measured in the same run (dense MiniLM over
name + description plus name-token overlap with the mention), and writes everything as JSON.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from retrieval.factory import open_retriever
from retrieval.jsonl import read_jsonl, write_json
from retrieval.search import DEFAULT_WEIGHTS, FusionConfig, MultiViewRetriever, QueryViews, reciprocal_rank_fusion

KS = (1, 10, 20, 50, 100)
BASELINE = {"context>description": 1.0, "mention>lexical": 1.0}
TEXT_CHANNELS = ("mention>name", "mention>lexical", "context>description", "context>name")


def gold_ranks(rankings: list[list[str]], gold: list[str]) -> np.ndarray:
    """1-based rank of each gold id in its ranking; 0 when absent."""
    return np.array([(r.index(g) + 1) if g in r else 0 for r, g in zip(rankings, gold)])


def recall_at(ranks: np.ndarray, ks=KS) -> dict[str, float]:
    """Share of gold ids ranked within each k, and MRR."""
    out = {f"@{k}": float(np.mean((ranks > 0) & (ranks <= k))) for k in ks}
    out["mrr"] = float(np.mean(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)))
    return out


def fuse(channel_rankings: list[dict], weights: dict[str, float], rrf_k: float, depth: int = 100) -> list[list[str]]:
    """Fused id rankings from precomputed channel rankings."""
    fused = []
    for per_query in channel_rankings:
        scores = reciprocal_rank_fusion(per_query, weights, rrf_k)
        fused.append([eid for eid, _ in sorted(scores.items(), key=lambda kv: (-kv[1][0], kv[0]))][:depth])
    return fused


def tune(channel_rankings: list[dict], gold: list[str]) -> tuple[dict[str, float], float, dict]:
    """Grid search of channel weights and rrf_k, maximising MRR (H@1 breaks ties)."""
    best: tuple[float, float] = (-1.0, -1.0)
    best_weights, best_k = dict(BASELINE), 60.0
    grid = [0.0, 0.5, 1.0, 2.0]
    combos = [c for c in itertools.product(grid, repeat=len(TEXT_CHANNELS)) if any(c)]
    for rrf_k in (10.0, 30.0, 60.0):
        for combo in tqdm(combos, desc=f"tune rrf_k={rrf_k:g}", leave=False):
            weights = dict(zip(TEXT_CHANNELS, combo))
            stats = recall_at(gold_ranks(fuse(channel_rankings, weights, rrf_k, depth=20), gold), ks=(1,))
            key = (stats["mrr"], stats["@1"])
            if key > best:
                best, best_weights, best_k = key, weights, rrf_k
    return best_weights, best_k, {"mrr": best[0], "@1": best[1]}


def latency(retriever: MultiViewRetriever, queries: list[QueryViews], n: int) -> dict[str, float]:
    """p50/p95 milliseconds of single-query searches (encoding, Chroma and fusion together)."""
    times = []
    for query in queries[:n]:
        started = time.perf_counter()
        retriever.search(query, k=20)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "n": len(times)}


def serve_store(store: Path) -> tuple[subprocess.Popen, str]:
    """Start `chroma run` over the store folder on a free local port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([shutil.which("chroma") or "chroma", "run", "--path", str(store), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(120):
        try:
            httpx.get(f"{url}/api/v2/heartbeat", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("chroma run did not come up")


def main(
    store: Annotated[Path, typer.Option(help="Store folder built by `vplink kb index`")],
    dataset: Annotated[Path, typer.Option(help="vplink JSONL examples with mention, text, answer")],
    out: Annotated[Path, typer.Option(help="JSON output")],
    limit: Annotated[Optional[int], typer.Option(help="Only the first N examples")] = None,
    tune_weights: Annotated[bool, typer.Option("--tune", help="Grid-search fusion weights on this split")] = False,
    server: Annotated[bool, typer.Option(help="Also time queries through a `chroma run` server")] = False,
    latency_n: Annotated[int, typer.Option(help="Single queries timed for latency")] = 200,
    batch: Annotated[int, typer.Option(help="Queries per batched search")] = 256,
) -> None:
    """Measure recall per channel and fused, optionally tune weights, and time queries."""
    console = Console()
    rows = [r for r in read_jsonl(dataset) if r.get("answer")][:limit]
    gold = [r["answer"] for r in rows]
    queries = [QueryViews(mention=r.get("mention"), context=r.get("text")) for r in rows]
    all_weights = {**DEFAULT_WEIGHTS, **{c: 1.0 for c in TEXT_CHANNELS}}
    retriever = open_retriever(store, config=FusionConfig(weights=all_weights))
    started = time.perf_counter()
    channel_rankings = []
    for start in tqdm(range(0, len(queries), batch), desc="search", unit="batch"):
        channel_rankings += retriever.channel_rankings(queries[start:start + batch])
    search_s = time.perf_counter() - started

    results: dict[str, dict] = {}
    for channel in TEXT_CHANNELS:
        ranked = [[eid for eid, _ in per_query.get(channel, [])] for per_query in channel_rankings]
        results[channel] = recall_at(gold_ranks(ranked, gold))
    results["baseline (dense name+description + lexical mention)"] = recall_at(
        gold_ranks(fuse(channel_rankings, BASELINE, 60.0), gold))
    results["fused, default weights"] = recall_at(
        gold_ranks(fuse(channel_rankings, DEFAULT_WEIGHTS, FusionConfig().rrf_k), gold))
    tuned = None
    if tune_weights:
        weights, rrf_k, _ = tune(channel_rankings, gold)
        tuned = {"weights": weights, "rrf_k": rrf_k}
        results["fused, tuned on this split"] = recall_at(gold_ranks(fuse(channel_rankings, weights, rrf_k), gold))

    timing = {"batched_search_s": search_s, "batched_qps": len(queries) / search_s,
              "embedded": latency(open_retriever(store), queries, latency_n)}
    if server:
        proc, url = serve_store(store)
        try:
            timing["chroma_server"] = latency(open_retriever(url), queries, latency_n)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    base = results["baseline (dense name+description + lexical mention)"]
    table = Table(title=f"retrieval recall on {dataset.name} (n={len(rows)}, KB {retriever.store.count()} entities)")
    for column in ("channel", *[f"R{k}" for k in ("@1", "@10", "@20", "@50", "@100")], "MRR", "MRR / baseline"):
        table.add_column(column, justify="right" if column != "channel" else "left")
    for name, stats in results.items():
        table.add_row(name, *[f"{stats[k]:.4f}" for k in ("@1", "@10", "@20", "@50", "@100", "mrr")],
                      f"{stats['mrr'] / base['mrr']:.3f}")
    console.print(table)
    console.print(f"batched: {timing['batched_qps']:.1f} queries/s; single query embedded p50 "
                  f"{timing['embedded']['p50_ms']:.1f} ms / p95 {timing['embedded']['p95_ms']:.1f} ms"
                  + (f"; chroma server p50 {timing['chroma_server']['p50_ms']:.1f} ms / p95 "
                     f"{timing['chroma_server']['p95_ms']:.1f} ms (ratio "
                     f"{timing['chroma_server']['p50_ms'] / timing['embedded']['p50_ms']:.2f}x)" if server else ""))
    if tuned:
        console.print(f"tuned: {tuned}")
    write_json(out, {"dataset": str(dataset), "n": len(rows), "kb_entities": retriever.store.count(),
                     "recall": results, "tuned": tuned, "timing": timing,
                     "text_encoder": retriever.text_encoder.name})


if __name__ == "__main__":
    typer.run(main)
