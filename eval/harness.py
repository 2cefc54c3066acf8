"""The evaluation harness: run a predictor over labeled queries, resumably, and write metrics, report and plot."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from vplink.core.errors import VplinkError
from vplink.core.inflight import in_flight
from vplink.core.jsonl import atomic_write, iter_jsonl, read_completed_ids, write_json
from vplink.core.provenance import provenance
from vplink.core.records import LabeledQuery, LinkQuery
from vplink.core.rundir import claim_run_dir
from vplink.eval import markdown as md
from vplink.eval.datasets import file_sha1
from vplink.eval.error_analysis import ERRORS, ErrorAnalysis, analyse_errors
from vplink.eval.metrics import KS, CalibrationMetrics, Metrics, Prediction, compute_metrics

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
REPORT = "report.md"
PLOT = "hits.png"
RELIABILITY = "reliability.png"
MANIFEST = "run.json"
WORST = 20


@runtime_checkable
class Predictor(Protocol):
    """Anything that links a batch of queries; it never sees the gold answers.

    It returns one :class:`Prediction` per query, matched by ``id``; a missing one is recorded as an error.
    It may also carry ``versions`` (a dict, or a method returning one) naming its models and prompts.
    """

    def predict(self, batch: list[LinkQuery]) -> list[Prediction]:
        """Rank KB entities for every query of the batch."""
        ...


def run_eval(examples: Sequence[LabeledQuery], predictor: Predictor, out_dir: str | Path, *, pipeline: str,
             dataset: str, versions: Mapping[str, Any] | None = None, concurrency: int = 4, batch_size: int = 32,
             resume: bool = True, retry_errors: bool = False, dataset_path: str | Path | None = None,
             entity_names: Mapping[str, str] | None = None, types: Mapping[str, str] | None = None,
             settings: Mapping[str, Any] | None = None, identity: Mapping[str, Any] | None = None,
             kb_ids: Collection[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Predict every example not yet in ``out_dir/predictions.jsonl``, then write metrics.json, errors.json (the
    error analysis), report.md and hits.png.

    ``dataset`` names the data (a path is hashed into the versions); ``entity_names`` and ``types`` improve the
    report and add a by-type breakdown. ``identity`` holds the caller's settings that shape a prediction (store,
    k, scorer, model...): with the predictor's versions it is recorded in run.json, and resuming a folder whose
    record differs is refused. ``kb_ids`` (every id of the KB) lets gold answers outside the KB be reported.
    Returns the metrics as written to metrics.json.
    """
    if concurrency < 1 or batch_size < 1:
        raise ValueError(f"concurrency and batch_size must be >= 1, got {concurrency} and {batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_unique(examples)
    data_path = Path(dataset_path) if dataset_path is not None else Path(dataset) if Path(dataset).is_file() else None
    data_sha1 = file_sha1(data_path) if data_path is not None else None
    claim_run_dir(out, _manifest(predictor, pipeline, data_path or dataset, data_sha1, identity), resume,
                  manifest_name=MANIFEST, records=PREDICTIONS)

    done = _completed(out / PREDICTIONS, retry_errors)
    todo = [example for example in examples if example.id not in done]
    if todo:
        # Until this run finishes, results from an earlier one would describe other predictions.
        for name in (METRICS, REPORT, ERRORS, PLOT, RELIABILITY):
            (out / name).unlink(missing_ok=True)
    started = time.perf_counter()
    new = _predict_all(todo, predictor, out / PREDICTIONS, concurrency=concurrency, batch_size=batch_size,
                       initial=len(examples) - len(todo), total=len(examples), progress=progress)
    elapsed = time.perf_counter() - started

    wanted = {example.id for example in examples}
    predictions = {qid: p for qid, p in read_predictions(out / PREDICTIONS).items() if qid in wanted}
    metrics = compute_metrics(predictions.values(), examples, types=types,
                              throughput_qps=new / elapsed if new and elapsed > 0 else None)
    all_versions = _versions(predictor, versions, data_path, data_sha1, len(examples))
    result = metrics_document(metrics, pipeline=pipeline, dataset=dataset, versions=all_versions)
    if kb_ids is not None:
        result["unknown_gold"] = unknown_gold(examples, kb_ids)
    write_json(out / METRICS, result)
    run_settings = {"pipeline": pipeline, "dataset": dataset, "examples": len(examples),
                    "concurrency": concurrency, "batch_size": batch_size, **(settings or {})}
    analysis = analyse_errors(examples, predictions, _names(entity_names, predictions.values()))
    write_json(out / ERRORS, analysis.model_dump(mode="json"))
    with atomic_write(out / REPORT) as handle:
        handle.write(render_report(result, metrics, analysis, run_settings))
    write_hits_plot(out / PLOT, metrics, title=f"{pipeline} on {Path(dataset).name}")
    if metrics.calibration is not None:
        write_reliability_plot(out / RELIABILITY, metrics.calibration, title=f"{pipeline} on {Path(dataset).name}")
    return result


def metrics_document(metrics: Metrics, *, pipeline: str, dataset: str, versions: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics.json object: fixed keys, plus ``nil`` and ``by_type`` when present."""
    doc: dict[str, Any] = {
        "pipeline": pipeline,
        "dataset": dataset,
        "hits": metrics.hits,
        "mrr": metrics.mrr,
        "recall_at_candidates": metrics.recall_at_candidates,
        "n": metrics.n,
        "latency_ms": {stage: stats.model_dump() for stage, stats in metrics.latency_ms.items()},
        "throughput_qps": metrics.throughput_qps,
        "versions": dict(versions),
    }
    if metrics.nil is not None:
        doc["nil"] = metrics.nil.model_dump()
    if metrics.abstention is not None:
        doc["abstention"] = metrics.abstention.model_dump()
    if metrics.calibration is not None:
        doc["calibration"] = metrics.calibration.model_dump()
    if metrics.by_type is not None:
        doc["by_type"] = {name: group.model_dump() for name, group in metrics.by_type.items()}
    doc["errors"] = metrics.errors
    return doc


def read_predictions(path: str | Path) -> dict[str, Prediction]:
    """Predictions of a run keyed by query id; a later line for an id replaces an earlier one (a retry)."""
    path = Path(path)
    if not path.exists():
        return {}
    read_completed_ids(path)  # drops a line torn by a crash before we parse
    return {str(obj["id"]): Prediction.model_validate(obj) for _, obj in iter_jsonl(path)}


# --- running ----------------------------------------------------------------------------------------------


def _predict_all(todo: list[LabeledQuery], predictor: Predictor, path: Path, *, concurrency: int, batch_size: int,
                 initial: int, total: int, progress: bool) -> int:
    """Run the batches on a bounded thread pool, appending each prediction as its batch finishes."""
    from vplink.core.progress import tqdm  # the widget form in notebooks, a text bar elsewhere

    batches = make_batches(todo, batch_size, getattr(predictor, "group", None))
    written = 0
    bar = tqdm(total=total, initial=initial, desc="eval", unit="q", disable=not progress)
    try:
        with open(path, "a", encoding="utf-8") as handle:
            for batch in in_flight(partial(_predict_batch, predictor), batches, concurrency=concurrency,
                                   name="vplink-eval"):
                for prediction in batch:
                    handle.write(prediction.model_dump_json() + "\n")
                # One flush + fsync per finished batch: on disk before the bar moves, and a crash
                # tears at most the last line, which resuming drops.
                handle.flush()
                os.fsync(handle.fileno())
                written += len(batch)
                bar.update(len(batch))
    finally:
        bar.close()
    return written


def make_batches(todo: Sequence[LabeledQuery], batch_size: int,
                 group: Callable[[LinkQuery], str] | None = None) -> list[list[LabeledQuery]]:
    """Batches of ``batch_size`` queries; with ``group`` (a predictor that decides a picture's boxes together),
    whole groups, so a batch never splits one (a group larger than ``batch_size`` is a batch of its own)."""
    if group is None:
        return [list(todo[i:i + batch_size]) for i in range(0, len(todo), batch_size)]
    groups: dict[str, list[LabeledQuery]] = {}
    for example in todo:
        groups.setdefault(group(example), []).append(example)
    batches: list[list[LabeledQuery]] = []
    for members in groups.values():
        if batches and len(batches[-1]) + len(members) <= batch_size:
            batches[-1].extend(members)
        else:
            batches.append(list(members))
    return batches


def _predict_batch(predictor: Predictor, batch: list[LabeledQuery]) -> list[Prediction]:
    """Predict one batch; if it fails, retry its queries one by one (one group at a time for a predictor that
    groups them) so one bad query fails alone."""
    try:
        return _call(predictor, batch)
    except Exception as exc:  # noqa: BLE001 - any failure of the pipeline is recorded, not fatal
        parts = make_batches(batch, 1, getattr(predictor, "group", None))
        if len(parts) == 1:
            return [Prediction.failed(example.id, _describe(exc)) for example in batch]
    results: list[Prediction] = []
    for part in parts:
        try:
            results.extend(_call(predictor, part))
        except Exception as exc:  # noqa: BLE001
            results.extend(Prediction.failed(example.id, _describe(exc)) for example in part)
    return results


def _call(predictor: Predictor, batch: list[LabeledQuery]) -> list[Prediction]:
    # The predictor gets plain LinkQuery copies: the gold answer must never reach it.
    queries = [LinkQuery(**example.model_dump(exclude={"answer"})) for example in batch]
    started = time.perf_counter()
    raw = predictor.predict(queries)
    per_query = (time.perf_counter() - started) * 1000.0 / len(batch)
    by_id: dict[str, Prediction] = {}
    for item in raw or []:
        prediction = item if isinstance(item, Prediction) else Prediction.model_validate(item)
        by_id[prediction.id] = prediction
    out: list[Prediction] = []
    for example in batch:
        prediction = by_id.get(example.id)
        if prediction is None:
            prediction = Prediction.failed(example.id, "the predictor returned no prediction for this query")
        else:
            # Batch wall time shared evenly: comparable across pipelines that report no total themselves.
            prediction.latency_ms.setdefault("total", per_query)
        out.append(prediction)
    return out


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _check_unique(examples: Sequence[LabeledQuery]) -> None:
    counts = Counter(example.id for example in examples)
    duplicated = [qid for qid, count in counts.items() if count > 1]
    if duplicated:
        raise VplinkError(f"examples share ids {duplicated[:5]}: resuming needs one id per example. "
                          "Fix: give every example a unique id")


def unknown_gold(examples: Sequence[LabeledQuery], kb_ids: Collection[str]) -> dict[str, Any]:
    """Queries whose gold answer is not an entity of the KB: how many, and the ids (they can never be hit)."""
    known = kb_ids if isinstance(kb_ids, (set, frozenset, dict)) else set(kb_ids)
    missing = [example.answer for example in examples if example.answer is not None and example.answer not in known]
    return {"queries": len(missing), "ids": sorted(set(missing))}


def _manifest(predictor: Predictor, pipeline: str, dataset: str | Path, sha1: str | None,
              identity: Mapping[str, Any] | None) -> dict[str, Any]:
    """Everything that shapes a prediction, as JSON: pipeline, data, the predictor's versions, the caller's settings."""
    own = getattr(predictor, "versions", None)
    own = own() if callable(own) else own
    manifest = {"pipeline": pipeline, "dataset": str(Path(dataset).resolve()) if Path(dataset).exists() else dataset,
                "dataset_sha1": sha1, "predictor": own or {}, "settings": dict(identity or {})}
    return json.loads(json.dumps(manifest, default=str))


def _completed(path: Path, retry_errors: bool) -> set[str]:
    if not retry_errors:
        return read_completed_ids(path)
    return {qid for qid, p in read_predictions(path).items() if p.error is None}


def _versions(predictor: Predictor, versions: Mapping[str, Any] | None, data_path: Path | None,
              data_sha1: str | None, n: int) -> dict[str, Any]:
    """Models and prompts (predictor's, then the caller's), data (file and sha1), code (git commit) and CPU."""
    own = getattr(predictor, "versions", None)
    own = own() if callable(own) else own
    merged: dict[str, Any] = {**(own or {}), **(versions or {})}
    data = dict(merged.get("data") or {})
    data.update({"dataset": str(data_path) if data_path else None, "dataset_sha1": data_sha1, "examples": n})
    merged["data"] = data
    merged["code"] = {**(merged.get("code") or {}), **provenance()}
    return merged


# --- report -----------------------------------------------------------------------------------------------

def render_report(result: Mapping[str, Any], metrics: Metrics, analysis: ErrorAnalysis,
                  settings: Mapping[str, Any]) -> str:
    """The human-readable report.md of one run."""
    # Everything that comes from data or the user goes through md.text / md.code: never live HTML.
    lines = [f"# Evaluation: {md.code(result['pipeline'])} on {md.code(result['dataset'])}", "", "## Metrics", "",
             "| metric | value |", "| --- | --- |"]
    for k, value in metrics.hits.items():
        lines.append(f"| Hits@{k} | {_pct(value)} |")
    lines += [f"| MRR | {_num(metrics.mrr)} |",
              f"| recall of gold among candidates | {_pct(metrics.recall_at_candidates)} |",
              f"| queries (n) | {metrics.n} |",
              f"| errors (failed queries) | {metrics.errors} |",
              f"| throughput (queries/s, this session) | {_num(metrics.throughput_qps, 2)} |", ""]
    if metrics.latency_ms:
        lines += ["| stage | p50 ms | p95 ms |", "| --- | --- | --- |"]
        lines += [f"| {md.text(stage)} | {s.p50:.1f} | {s.p95:.1f} |" for stage, s in metrics.latency_ms.items()]
        lines.append("")
    if metrics.nil is not None:
        nil = metrics.nil
        lines += ["### NIL detection", "", "| precision | recall | F1 | gold NIL | predicted NIL |",
                  "| --- | --- | --- | --- | --- |",
                  f"| {_pct(nil.precision)} | {_pct(nil.recall)} | {_pct(nil.f1)} | {nil.n_gold_nil} | "
                  f"{nil.n_pred_nil} |", ""]
    if metrics.abstention is not None:
        cost = metrics.abstention
        lines += ["### What NIL costs the in-KB queries", "", "| Hits@1 without NIL answers | Hits@1 with them | "
                  "in-KB queries answered NIL |", "| --- | --- | --- |",
                  f"| {_pct(cost.h1_before_nil)} | {_pct(cost.h1_after_nil)} | {cost.nil_on_in_kb} |", ""]
    if metrics.calibration is not None:
        lines += ["### Calibration of the confidence", "",
                  f"Expected calibration error over 10 bins: **{metrics.calibration.ece:.4f}** "
                  f"({metrics.calibration.n} answers; `{RELIABILITY}` draws the diagram).", "",
                  "| confidence bin | answers | mean confidence | top-1 right |", "| --- | --- | --- | --- |"]
        lines += [f"| {b.low:.1f}–{b.high:.1f} | {b.n} | {_num(b.confidence)} | {_num(b.accuracy)} |"
                  for b in metrics.calibration.bins]
        lines.append("")
    unknown = result.get("unknown_gold")
    if unknown and unknown["queries"]:
        shown = ", ".join(md.code(eid) for eid in unknown["ids"][:50])
        more = f" and {len(unknown['ids']) - 50} more" if len(unknown["ids"]) > 50 else ""
        lines += ["### Gold answers not in the KB", "",
                  f"{unknown['queries']} queries have a gold entity that is not in the KB, so no pipeline can find "
                  f"it; they count as misses. The {len(unknown['ids'])} ids: {shown}{more}.", ""]
    if metrics.by_type:
        lines += ["### By entity type", "", "| type | n | Hits@1 | Hits@5 | MRR |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {md.text(name)} | {g.n} | {_pct(g.hits.get('1'))} | {_pct(g.hits.get('5'))} | {_num(g.mrr)} |"
                  for name, g in metrics.by_type.items()]
        lines.append("")
    lines += ["## How to read these numbers", "",
              "Hits@k is the share of queries whose gold entity is among the top k of the ranking over the whole "
              "KB; MRR averages 1/rank of the gold. A gold entity outside the returned ranking (not retrieved as "
              "a candidate) counts as a miss with reciprocal rank 0, and so does a failed query or a query "
              "answered NIL whose gold is in the KB. Hits@k and MRR are over queries whose gold is in the KB; "
              "NIL queries are scored only by the NIL table. \"Recall of gold among candidates\" is the share of "
              "queries whose gold was retrieved at all: the ceiling of any reranker over these candidates.", "",
              "## Settings", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {md.text(key)} | {md.text(value)} |" for key, value in settings.items()]
    lines += ["", "Versions:", "", *md.fence(json.dumps(result.get("versions", {}), indent=2, ensure_ascii=False,
                                                        default=str), "json"), ""]
    lines += _error_sections(analysis)
    return "\n".join(lines).rstrip() + "\n"


def _error_sections(analysis: ErrorAnalysis) -> list[str]:
    """The error analysis as report.md's last sections."""
    lines = ["## Where the errors come from", ""]
    if not analysis.wrong:
        return lines + ["Every top-1 answer is right.", ""]
    lines += [f"{analysis.wrong} of {analysis.queries} queries have a wrong top-1 answer. Each falls in the first "
              "class that matches, in this order:", "", "| class | errors | share of errors | meaning |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {c.name} | {c.errors} | {c.share:.1%} | {c.meaning} |" for c in analysis.classes]
    lines += ["", f"## The {len(analysis.worst)} worst errors", "",
              "Worst first: gold not ranked at all, then the gold's rank from lowest; ties by the top-1 score.", ""]
    for error in analysis.worst:
        gold = "NIL" if error.gold_id is None else f"{md.text(error.gold_name)} {md.code(error.gold_id)}"
        lines += [f"### {error.number}. {md.code(error.query_id)}: {error.error_class}", "",
                  f"- mention: {_quote(error.mention) if error.mention else '(visual prompt only)'}"]
        if error.text:
            lines.append(f"- text: {_quote(error.text)}")
        lines.append(f"- gold: {gold}, rank {error.gold_rank if error.gold_rank is not None else 'none (miss)'}")
        if error.error is not None:
            lines += [f"- error: {md.code(error.error)}", ""]
            continue
        if error.answered_nil:
            lines.append("- answered: NIL")
        lines += ["", "| rank | entity | name | score |", "| --- | --- | --- | --- |"]
        lines += [f"| {row.rank} | {md.code(row.id)}{' (gold)' if row.gold else ''} | {md.text(row.name)} | "
                  f"{row.score:.3f} |" for row in error.ranking]
        lines.append("")
    return lines


def _names(entity_names: Mapping[str, str] | None, predictions: Sequence[Prediction] | Any) -> dict[str, str]:
    """Entity names from the caller, completed by the names the pipeline put in its rankings."""
    names: dict[str, str] = {}
    for prediction in predictions:
        for entity in prediction.ranking:
            if entity.name:
                names.setdefault(entity.id, entity.name)
    names.update(entity_names or {})
    return names


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _quote(text: str) -> str:
    return '"' + md.text(text) + '"'


# --- plot -------------------------------------------------------------------------------------------------


def write_hits_plot(path: str | Path, metrics: Metrics, *, title: str = "") -> None:
    """Draw the Hits@k curve to a PNG, atomically, without touching pyplot's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ks = [int(k) for k in metrics.hits]
    values = [100 * (metrics.hits[str(k)] or 0.0) for k in ks]
    figure = Figure(figsize=(5, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(ks, values, marker="o", label="Hits@k")
    if metrics.recall_at_candidates is not None:
        # The reranker's ceiling: no ranking of these candidates can score above it.
        axes.axhline(100 * metrics.recall_at_candidates, linestyle="--", color="grey", linewidth=1,
                     label="gold among candidates")
        axes.legend(loc="lower right", fontsize=8)
    for k, value in zip(ks, values):
        axes.annotate(f"{value:.1f}", (k, value), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    axes.set_xticks(ks or list(KS))
    axes.set_xlabel("k")
    axes.set_ylabel("Hits@k (%)")
    axes.set_ylim(0, 105)
    axes.grid(alpha=0.3)
    axes.set_title(title or "Hits@k", fontsize=10)
    # Fixed margins rather than tight_layout: as readable here, and a third of the time.
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.15, top=0.9)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")


def write_reliability_plot(path: str | Path, calibration: CalibrationMetrics, *, title: str = "") -> None:
    """Draw the reliability diagram (mean confidence vs share of right top-1 answers per bin) to a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    filled = [b for b in calibration.bins if b.n]
    figure = Figure(figsize=(4.5, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    axes.bar([(b.low + b.high) / 2 for b in filled], [b.accuracy for b in filled], width=0.09, alpha=0.6,
             label="top-1 right (share)")
    axes.plot([b.confidence for b in filled], [b.accuracy for b in filled], marker="o", linewidth=1,
              label="bin: mean confidence")
    for b in filled:
        axes.annotate(str(b.n), ((b.low + b.high) / 2, b.accuracy), textcoords="offset points", xytext=(0, 4),
                      ha="center", fontsize=7)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.08)
    axes.set_xlabel("confidence")
    axes.set_ylabel("accuracy of the top-1")
    axes.legend(loc="upper left", fontsize=7)
    axes.grid(alpha=0.3)
    axes.set_title(f"{title or 'reliability'} (ECE {calibration.ece:.3f})", fontsize=9)
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.92)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")
