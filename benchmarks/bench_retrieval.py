"""Retrieval benchmark: recall@k per channel and fused, weight tuning on dev, query latency.

    python benchmarks/bench_retrieval.py --store stores/wikimel --dataset ../shared/data/wikimel/dev.jsonl \
        --out results/retrieval_dev.json [--tune] [--server]

Prints a table with each row's ratio to the baseline measured in the same run (dense MiniLM over
name + description plus name-token overlap with the mention), and writes everything as JSON.
"""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from vplink.core.progress import tqdm

from vplink.core.jsonl import read_jsonl, write_json
from vplink.core.provenance import provenance
from vplink.retrieval.factory import open_retriever
from vplink.retrieval.search import (DATES_CHANNEL, DEFAULT_WEIGHTS, FusionConfig, MultiViewRetriever, QueryViews,
                                     channel_matrix, fused_scores, rank_scores)

KS = (1, 10, 20, 50, 100)
BASELINE = {"context>description": 1.0, "mention>lexical": 1.0}
BASELINE_NAME = "baseline: dense name+description + lexical mention"
# Sorted: the production fusion adds channels in name order, and tuning must add them the same way.
TEXT_CHANNELS = tuple(sorted(("mention>name", "mention>lexical", "context>description", "context>name",
                              DATES_CHANNEL)))


def gold_ranks(rankings: list[list[str]], gold: list[str]) -> np.ndarray:
    """1-based rank of each gold id in its ranking; 0 when absent."""
    return np.array([(r.index(g) + 1) if g in r else 0 for r, g in zip(rankings, gold)])


def recall_at(ranks: np.ndarray, ks=KS) -> dict[str, float]:
    """Share of gold ids ranked within each k, and MRR."""
    out = {f"@{k}": float(np.mean((ranks > 0) & (ranks <= k))) for k in ks}
    out["mrr"] = float(np.mean(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)))
    return out


def channel_matrices(channel_rankings: list[dict], gold: list[str], channels=TEXT_CHANNELS
                     ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per query, the production fusion's own input (:func:`vplink.retrieval.search.channel_matrix`): rank
    and score matrices over candidates (rows in id order) x channels, and the gold's row (-1 when not retrieved)."""
    ranks, scores, gold_rows = [], [], []
    for per_query, g in zip(channel_rankings, gold):
        ids, score, rank = channel_matrix(per_query, channels)
        ranks.append(rank)
        scores.append(score)
        gold_rows.append(ids.index(g) if g in ids else -1)
    return ranks, scores, np.array(gold_rows)


def fused_gold_ranks(features: list[np.ndarray], gold_rows: np.ndarray, weights: np.ndarray,
                     ranks: list[np.ndarray] | None = None, channels=TEXT_CHANNELS) -> np.ndarray:
    """The gold's rank (0 when absent) under the production fusion with these weights.

    As in :class:`MultiViewRetriever`: the candidates are those a weighted channel other than the
    dates returned (with ``ranks``), scores are summed by :func:`fused_scores`, rounded by
    :func:`rank_scores`, and ties go to the smaller id (rows are in id order).
    """
    weights = np.asarray(weights, dtype=float)
    pool = np.array([w > 0 and c != DATES_CHANNEL for c, w in zip(channels, weights)])
    out = np.zeros(len(features), dtype=int)
    for i, (feat, g) in enumerate(zip(features, gold_rows)):
        if g < 0 or not len(feat):
            continue
        candidate = np.isfinite(ranks[i][:, pool]).any(axis=1) if ranks is not None \
            else np.ones(len(feat), dtype=bool)
        if not candidate[g]:
            continue
        fused = rank_scores(fused_scores(feat, weights))
        out[i] = 1 + int(np.sum(candidate & (fused > fused[g]))) + int(np.sum(candidate[:g] & (fused[:g] == fused[g])))
    return out


def rrf_features(ranks: list[np.ndarray], rrf_k: float) -> list[np.ndarray]:
    """RRF as a linear fusion: each channel contributes 1 / (rrf_k + rank)."""
    return [1.0 / (rrf_k + r) for r in ranks]


def tune(features_by_setting: dict[str, list[np.ndarray]], gold_rows: np.ndarray, ranks: list[np.ndarray] | None = None,
         grid=(0.0, 0.5, 1.0, 2.0)) -> tuple[str, dict[str, float], dict]:
    """Grid search of channel weights for each setting (fusion method and its rrf_k), maximising MRR then H@1."""
    best, best_setting, best_weights = (-1.0, -1.0), "", {}
    combos = [c for c in itertools.product(grid, repeat=len(TEXT_CHANNELS)) if any(c)]
    for setting, features in features_by_setting.items():
        for combo in tqdm(combos, desc=f"tune {setting}", leave=False):
            stats = recall_at(fused_gold_ranks(features, gold_rows, np.array(combo), ranks), ks=(1,))
            if (stats["mrr"], stats["@1"]) > best:
                best, best_setting, best_weights = (stats["mrr"], stats["@1"]), setting, dict(zip(TEXT_CHANNELS, combo))
    return best_setting, best_weights, {"mrr": best[0], "@1": best[1]}


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
    cache: Annotated[Optional[Path], typer.Option(help="Keep the per-channel rankings here (gzip JSON) "
                                                       "and reuse them on the next run")] = None,
    prefix: Annotated[Optional[str], typer.Option(help="The KB's prefix (when the store holds several)")] = None,
    text_model: Annotated[Optional[Path], typer.Option(help="Text model folder (default: the store's)")] = None,
) -> None:
    """Measure recall per channel and fused, optionally tune weights, and time queries."""
    console = Console()
    rows = [r for r in read_jsonl(dataset) if r.get("answer")][:limit]
    gold = [r["answer"] for r in rows]
    queries = [QueryViews(mention=r.get("mention"), context=r.get("text")) for r in rows]
    all_weights = {**DEFAULT_WEIGHTS, **{c: 1.0 for c in TEXT_CHANNELS}}
    retriever = open_retriever(store, config=FusionConfig(weights=all_weights), prefix=prefix,
                               text_model=text_model)
    started = time.perf_counter()
    from_cache = bool(cache and cache.exists())
    if from_cache:
        channel_rankings = json.loads(gzip.decompress(cache.read_bytes()))
    else:
        channel_rankings = []
        for start in tqdm(range(0, len(queries), batch), desc="search", unit="batch"):
            channel_rankings += retriever.channel_rankings(queries[start:start + batch])
        if cache:
            cache.write_bytes(gzip.compress(json.dumps(channel_rankings).encode()))
    search_s = time.perf_counter() - started
    retriever.add_date_channel(queries, channel_rankings)  # cheap; cached rankings predate it

    ranks, scores, gold_rows = channel_matrices(channel_rankings, gold)
    as_vector = lambda weights: np.array([weights.get(c, 0.0) for c in TEXT_CHANNELS])  # noqa: E731
    results: dict[str, dict] = {}
    for channel in TEXT_CHANNELS:
        ranked = [[eid for eid, _ in per_query.get(channel, [])] for per_query in channel_rankings]
        results[channel] = recall_at(gold_ranks(ranked, gold))
    results[BASELINE_NAME] = recall_at(fused_gold_ranks(scores, gold_rows, as_vector(BASELINE), ranks))
    results["RRF (k=60), equal weights"] = recall_at(fused_gold_ranks(rrf_features(ranks, 60.0), gold_rows,
                                                                      np.ones(len(TEXT_CHANNELS)), ranks))
    results["score fusion, default weights"] = recall_at(fused_gold_ranks(scores, gold_rows, as_vector(DEFAULT_WEIGHTS),
                                                                          ranks))
    tuned = None
    if tune_weights:
        settings = {"score": scores, **{f"rrf k={k:g}": rrf_features(ranks, k) for k in (10.0, 60.0)}}
        setting, weights, _ = tune(settings, gold_rows, ranks)
        tuned = {"setting": setting, "weights": weights}
        results[f"tuned on this split ({setting})"] = recall_at(
            fused_gold_ranks(settings[setting], gold_rows, as_vector(weights), ranks))

    timing = {"batched_search_s": search_s, "batched_qps": len(queries) / search_s, "rankings_from_cache": from_cache,
              "embedded": latency(open_retriever(store, prefix=prefix, text_model=text_model), queries, latency_n)}
    if server:
        proc, url = serve_store(store)
        try:
            timing["chroma_server"] = latency(open_retriever(url, prefix=prefix), queries, latency_n)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    base = results[BASELINE_NAME]
    table = Table(title=escape(f"retrieval recall on {dataset.name} (n={len(rows)}, KB {retriever.store.count()} entities)"))
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
                     "text_encoder": retriever.text_encoder.name, "provenance": provenance()})


if __name__ == "__main__":
    typer.run(main)
