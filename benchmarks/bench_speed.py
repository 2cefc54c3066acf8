"""Speed on a CPU: index a KB and run `retrieve` over a test split, against baselines measured in the same run.

    python benchmarks/bench_speed.py [--data ../shared/data] [--backend onnx] [--repeat 3] [--reference] [--dev] \
        [--llm-url http://127.0.0.1:8801/v1] [--store DIR --box --service] [--out benchmarks/results/speed.json]

In one run, on one machine:

1. the naive baseline: plain ``SentenceTransformer.encode`` (torch) of every entity's name and description text;
2. ``KBStore.index`` of the whole KB with the fast text backend (encoding and Chroma writes together);
   with ``--repeat N``, steps 1 and 2 alternate N times and the median pair's ratio is reported with the range;
3. with ``--reference``, a store holding the baseline's torch vectors (same texts, only the backend differs);
4. ``retrieve`` (the eval pipeline) over the whole test split: queries/s and Hits@k; with ``--reference``
   also on the reference store with torch-encoded queries (the accuracy the fast backend may cost);
5. with ``--dev``, the same on the dev split; ``--store DIR`` runs steps 4-7 on a store built before (``kb index``)
   and skips 1-3;
6. with ``--box``, box linking without a model on the 69 boxed mentions (mention hidden), warm: seconds per box
   (p50, p95) and Hits@1;
7. with ``--service``, the real `vplink serve` on the store: seconds until /health reports it warm, then ten
   requests, each a box on another picture (no picture's faces or text are cached): the first over the tenth;
8. with ``--llm-url``, the model server's tokens/s (``vplink llm bench``) and the agent on the 69 boxed
   mentions (mention hidden) with routing and with the model asked on every box, at concurrency 1 and 8:
   seconds per box, boxes per minute, the share of boxes that reached the model, Hits@1.

Ratios are the claims: the machine may be shared, so absolute seconds are recorded with the load average, and
CPU seconds beside wall seconds. The JSON is rewritten after each step ("complete" turns true at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vplink.core.errors import VplinkError
from vplink.core.jsonl import write_json
from vplink.core.provenance import provenance
from vplink.core.records import Entity
from vplink.eval.datasets import read_dataset
from vplink.eval.metrics import compute_metrics
from vplink.eval.pipelines import build_predictor
from vplink.retrieval.kb import load_kb
from vplink.retrieval.store import KBStore
from vplink.retrieval.text_encoder import TextEncoder
from vplink.wiring import open_linker

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Wall and CPU seconds of a block (CPU time is less sensitive to other work on a shared machine)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": round(self.wall, 3), "cpu_s": round(self.cpu, 3)}


class PrecomputedEncoder:
    """Hands the store vectors computed elsewhere (the naive baseline's), under the real encoder's fingerprint."""

    def __init__(self, like: TextEncoder, vectors: dict[str, np.ndarray]) -> None:
        self.name, self.spec, self.backend = like.name, like.spec, "torch"
        self.vectors = vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts]).astype(np.float32)


def naive_encode(model_path: Path, entities: list[Entity]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Plain sentence-transformers (torch, default batch size) over the name and description texts."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    model.encode(["warm up"])
    vectors: dict[str, np.ndarray] = {}
    timings = {}
    for view, text_of in (("name", Entity.name_view), ("description", Entity.description_view)):
        texts = [text_of(e) for e in entities]
        with Clock() as clock:
            encoded = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        vectors.update(zip(texts, encoded))
        timings[view] = clock.as_dict()
    timings["total"] = {key: round(timings["name"][key] + timings["description"][key], 3) for key in ("wall_s", "cpu_s")}
    return vectors, timings


def index_store(folder: Path, entities: list[Entity], encoder) -> dict[str, Any]:
    """Index the whole KB into a fresh store folder (text views only) and time it."""
    store = KBStore(folder)
    store.drop()
    with Clock() as clock:
        report = store.index(entities, encoder, progress=False)
    return {"store": str(folder), "entities": store.count(), "added": report.added, **clock.as_dict()}


def retrieve(folder: Path, dataset: Path, batch: int) -> dict[str, Any]:
    """Run the retrieve pipeline over a whole split in batches: queries/s and Hits@k of the ranking (each answer's
    confidence is computed and timed; NIL answers are not made, so Hits@k compares with earlier rankings)."""
    loaded = read_dataset(dataset, allow_missing_images=True)
    predictor = build_predictor("retrieve", open_linker(store=folder, nil=False))
    predictor.predict(loaded.examples[:8])  # warm: model, lexical index and catalogue are built on first use
    predictions = []
    with Clock() as clock:
        for start in range(0, len(loaded.examples), batch):
            predictions += predictor.predict(loaded.examples[start:start + batch])
    metrics = compute_metrics(predictions, loaded.examples)
    return {"dataset": str(dataset), "dataset_sha1": loaded.sha1, "n": len(loaded.examples),
            "backend": predictor.retriever.text_encoder.backend, **clock.as_dict(),
            "queries_per_s": round(len(loaded.examples) / clock.wall, 2),
            "queries_per_cpu_s": round(len(loaded.examples) / clock.cpu, 2),
            "hits": metrics.hits, "mrr": metrics.mrr}


#: The boxed mentions the agent runs on (mention hidden: the box is the mention), and the settings of the
#: committed box runs (results/README.md): the model's choice counts, no reflection.
BOXED = ROOT / "tests" / "fixtures" / "wikimel_with_images_boxed.jsonl"
AGENT_OPTIONS = ("max_reflections=0", "choice_weight=1.0")
#: Routing off: no alignment is ever sure enough to skip the model (route_confidence is at most 1).
ALWAYS_ASK = "route_confidence=1.01"


def agent_run(args: argparse.Namespace, store: Path, name: str, concurrency: int, always_ask: bool) -> dict[str, Any]:
    """One fresh `vplink eval -p agent --no-mention` run over the boxed mentions: seconds per box, boxes per
    minute, the share of boxes that reached the model, Hits@1."""
    from vplink.eval.box_report import box_report

    run_dir = args.work / "agent" / name
    options = [*AGENT_OPTIONS, *([ALWAYS_ASK] if always_ask else [])]
    command = [sys.executable, "-m", "vplink", "eval", "run", str(BOXED), "--store", str(store), "-p", "agent",
               "--no-mention", "--images", str(args.data / "wikimel"), "--out", str(run_dir), "--restart",
               "--llm-url", args.llm_url, "--concurrency", str(concurrency), "--batch-size", "1",
               *(part for option in options for part in ("-O", option))]
    with Clock() as clock:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    examples = read_dataset(BOXED, images=args.data / "wikimel").examples
    report = box_report(run_dir, examples)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    asked = sum(1 for line in (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
                if "describe" in json.loads(line).get("latency_ms", {}))
    return {"run": str(run_dir), "concurrency": concurrency, "always_ask": always_ask, "options": options,
            "boxes": report["examples"], "boxes_to_model": asked, "share_to_model": round(asked / report["examples"], 4),
            "hits@1": report["hits@1"], "mrr": report["mrr"],
            # one box from start to answer, and boxes finished per minute once the run has started
            "seconds_per_box": report["seconds_per_box"]["total"]["mean"],
            "boxes_per_min": round(60 * metrics["throughput_qps"], 2),
            "command_wall_s": round(clock.wall, 3)}  # the whole command, loading its models included


def agent_section(args: argparse.Namespace, store: Path, out: dict[str, Any], save: Callable[[], None],
                  say: Callable[[str], None]) -> None:
    """Fill ``out`` with the agent on the 69 boxed mentions with and without routing, at each concurrency
    (needs --llm-url); ``save`` is called after each run."""
    if not args.llm_url:
        out.update(measured=False, reason="no --llm-url: the agent's routing needs a model server")
        return
    out.update(measured=True, llm_url=args.llm_url, dataset=str(BOXED), runs={})
    say("model server throughput (vplink llm bench)...")
    throughput = args.work / "llm_throughput.json"
    levels = [part for c in args.agent_concurrency for part in ("--concurrency", str(c))]
    subprocess.run([sys.executable, "-m", "vplink", "llm", "bench", "--url", args.llm_url, *levels,
                    "--out", str(throughput)], check=True, stdout=subprocess.DEVNULL)
    out["llm_throughput"] = json.loads(throughput.read_text(encoding="utf-8"))
    save()
    for concurrency in args.agent_concurrency:
        for always_ask in (False, True):
            name = f"{'always' if always_ask else 'routed'}-c{concurrency}"
            say(f"agent on {BOXED.name}, {name}...")
            out["runs"][name] = result = agent_run(args, store, name, concurrency, always_ask)
            say(f"  {result['seconds_per_box']} s/box, {result['boxes_to_model']} boxes to the model, "
                f"H@1 {result['hits@1']}")
            save()
        routed, always = out["runs"][f"routed-c{concurrency}"], out["runs"][f"always-c{concurrency}"]
        out[f"c{concurrency}_seconds_per_box_routed_over_always"] = round(
            routed["seconds_per_box"] / always["seconds_per_box"], 3)
        out[f"c{concurrency}_h1_points_routed_minus_always"] = round(100 * (routed["hits@1"] - always["hits@1"]), 2)


def box_linking(store: Path, data: Path) -> dict[str, Any]:
    """Box linking without a model, warm: every boxed mention linked once (mention hidden), after one warm-up."""
    from statistics import median

    rows = read_dataset(BOXED, images=data / "wikimel").examples
    linker = open_linker(store=store, nil=False)  # Hits@1 of the ranking, as before NIL existed
    warm_up_s = linker.warm_up()
    spent, hits, prepare = [], 0, []
    for row in rows:
        with Clock() as clock:
            result = linker.link(row.image, box=row.box, text=row.text)
        spent.append(clock.wall)
        prepare.append(result.timings_ms.get("prepare", 0.0))
        hits += bool(result.ranking) and result.ranking[0].id == row.answer
    ordered = sorted(spent)
    return {"dataset": str(BOXED), "boxes": len(rows), "warm_up_s": round(warm_up_s, 3),
            "p50_s": round(median(ordered), 4), "p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 4),
            "mean_s": round(sum(ordered) / len(ordered), 4), "prepare_p50_ms": round(median(prepare), 1),
            "hits@1": round(hits / len(rows), 4), "hits": hits}


def service_first_requests(store: Path, data: Path, requests: int = 10) -> dict[str, Any]:
    """`vplink serve` from start: seconds until /health says warm, then one box on each of ``requests`` pictures."""
    import httpx

    from bench_service import start_server  # the sibling script's way to start `vplink serve`

    rows, seen = [], set()
    for row in read_dataset(BOXED, images=data / "wikimel").examples:
        if row.image not in seen:
            seen.add(row.image)
            rows.append(row)
    with Clock() as started:
        process, url = start_server(str(store), Path(os.devnull), ["--image-root", str(data / "wikimel")])
    try:
        health = httpx.get(f"{url}/health", timeout=10).json()
        latencies = []
        with httpx.Client(base_url=url, timeout=300) as http:
            for row in rows[:requests]:
                box = ",".join(str(v) for v in row.box)
                with Clock() as clock:
                    answer = http.post("/link", data={"path": str(Path(row.image).relative_to(data / "wikimel")),
                                                      "box": box, "text": row.text})
                answer.raise_for_status()
                latencies.append(round(clock.wall, 4))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"start_to_warm_s": round(started.wall, 2), "warm_up_s": health.get("warm_up_s"), "latencies_s": latencies,
            "first_over_tenth": round(latencies[0] / latencies[-1], 3)}


def machine() -> dict[str, Any]:
    """What the timings ran on, and how busy it was."""
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "sentence-transformers", "onnxruntime", "chromadb", "numpy")}


def run(args: argparse.Namespace, save: Callable[[dict[str, Any]], None], say: Callable[[str], None] = print
        ) -> dict[str, Any]:
    """Every measurement of one run, as a JSON-ready dict; ``save`` gets the partial result after each step."""
    if args.llm_url:  # a wrong URL fails now, not after the index and retrieve steps
        from vplink.agent.llm_client import LLMClient, LLMConfig

        LLMClient(LLMConfig(url=args.llm_url)).check()
    wikimel = args.data / "wikimel"
    out: dict[str, Any] = {"provenance": provenance(), "machine_before": machine(), "versions": versions(),
                           "flags": sys.argv[1:], "complete": False}
    if args.store is not None:
        return run_on_store(args, out, save, say)
    entities = load_kb(wikimel / "kb.jsonl", check_images=False).entities
    fast = TextEncoder(backend=args.backend)
    fast.encode(["warm up"])  # exports the ONNX model once, outside the timing
    out.update({"kb": {"path": str(wikimel / "kb.jsonl"), "entities": len(entities)},
                "text_encoder": fast.name, "fast_backend": args.backend})
    out["index_runs"] = []
    vectors: dict[str, np.ndarray] = {}
    for repeat in range(args.repeat):
        # Baseline and fast index alternate, so a slow spell of a shared machine hits both of a pair.
        say(f"[{repeat + 1}/{args.repeat}] naive encode of {len(entities)} entities (torch)...")
        vectors, naive = naive_encode(fast.model_path, entities)
        say(f"  {naive['total']}")
        say(f"[{repeat + 1}/{args.repeat}] index with {args.backend}...")
        indexed = index_store(args.work / args.backend, entities, fast)
        say(f"  {indexed['wall_s']} s wall")
        out["index_runs"].append({"naive_encode": naive, "index_fast": indexed, **{
            f"ratio_{kind}": round(indexed[f"{kind}_s"] / naive["total"][f"{kind}_s"], 3) for kind in ("wall", "cpu")}})
        save(out)
    out["ratios"] = {}
    for kind in ("wall", "cpu"):
        ratios = [pair[f"ratio_{kind}"] for pair in out["index_runs"]]
        # The median pair is the claim; the range shows how much the machine moved it.
        out["ratios"][f"index_fast_over_naive_encode_{kind}"] = round(float(np.median(ratios)), 3)
        out["ratios"][f"index_fast_over_naive_encode_{kind}_range"] = [min(ratios), max(ratios)]
    save(out)
    if args.reference:
        say("reference store with the naive vectors...")
        out["index_reference_upsert_only"] = index_store(args.work / "torch", entities,
                                                         PrecomputedEncoder(fast, vectors))
    for split in ("test", *(["dev"] if args.dev else [])):
        for name in (args.backend, *(["torch"] if args.reference else [])):
            say(f"retrieve {split} on the {name} store...")
            result = retrieve(args.work / name, wikimel / f"{split}.jsonl", args.batch)
            out[f"retrieve_{split}_{name}"] = result
            say(f"  {result['queries_per_s']} queries/s, H@1 {result['hits']['1']:.4f}")
            save(out)
        if not args.reference:
            continue
        fast_run, ref_run = out[f"retrieve_{split}_{args.backend}"], out[f"retrieve_{split}_torch"]
        out["ratios"][f"retrieve_{split}_qps_fast_over_torch"] = round(fast_run["queries_per_s"] / ref_run["queries_per_s"], 3)
        out["ratios"][f"retrieve_{split}_h1_points_fast_minus_torch"] = round(
            100 * (fast_run["hits"]["1"] - ref_run["hits"]["1"]), 3)
    out["agent"] = {}
    agent_section(args, args.work / args.backend, out["agent"], lambda: save(out), say)
    out["machine_after"] = machine()
    out["complete"] = True
    save(out)
    return out


def run_on_store(args: argparse.Namespace, out: dict[str, Any], save: Callable[[dict[str, Any]], None],
                 say: Callable[[str], None]) -> dict[str, Any]:
    """Steps 4-7 on a store built before: retrieve on each split, box linking, the service's first requests."""
    out["store"] = str(args.store)
    out["ratios"] = {}
    for split in ("test", *(["dev"] if args.dev else [])):
        say(f"retrieve {split} on {args.store}...")
        out[f"retrieve_{split}"] = result = retrieve(args.store, args.data / "wikimel" / f"{split}.jsonl", args.batch)
        say(f"  {result['queries_per_s']} queries/s, H@1 {result['hits']['1']:.4f}")
        save(out)
    if args.box:
        say("box linking without a model (69 boxes, warm)...")
        out["box_linking"] = box = box_linking(args.store, args.data)
        say(f"  p50 {box['p50_s']} s, p95 {box['p95_s']} s, H@1 {box['hits@1']}")
        save(out)
    if args.service:
        say("vplink serve: start, warm, ten requests on ten pictures...")
        out["service"] = served = service_first_requests(args.store, args.data)
        out["ratios"]["service_first_over_tenth"] = served["first_over_tenth"]
        say(f"  warm after {served['start_to_warm_s']} s; requests {served['latencies_s']}")
    out["machine_after"] = machine()
    out["complete"] = True
    save(out)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="holds wikimel/")
    parser.add_argument("--backend", default="openvino", help="the fast text backend: openvino, openvino-bf16, onnx or onnx-int8")
    parser.add_argument("--work", type=Path, default=ROOT / "stores" / "bench_speed", help="store folders go here")
    parser.add_argument("--batch", type=int, default=256, help="queries per retrieve call")
    parser.add_argument("--dev", action="store_true", help="also Hits@1 on the dev split")
    parser.add_argument("--reference", action="store_true",
                        help="also retrieve on a store of the naive torch vectors, queries encoded with torch")
    parser.add_argument("--llm-url", help="a vLLM server (vplink llm serve): also time the agent with and without routing")
    parser.add_argument("--agent-concurrency", type=int, nargs="+", default=[1, 8],
                        help="boxes linked at once in the agent runs")
    parser.add_argument("--repeat", type=int, default=1,
                        help="naive encode and fast index pairs, alternated; the median pair's ratio is reported")
    parser.add_argument("--store", type=Path, help="a store built before: run retrieve (and --box, --service) on it, "
                                                   "skipping the index steps")
    parser.add_argument("--box", action="store_true", help="with --store: box linking without a model, warm")
    parser.add_argument("--service", action="store_true", help="with --store: `vplink serve`'s first ten requests")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed.json")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, save=lambda partial: write_json(args.out, partial))
    except VplinkError as error:
        sys.exit(f"error: {error}")
    print(json.dumps(result["ratios"], indent=1))
    print(f"wrote {args.out}; {result['provenance']}")


if __name__ == "__main__":
    sys.exit(main())
