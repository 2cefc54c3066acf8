"""`vplink distill`: annotate a dataset with the teacher's rationales, and train the student scorer on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

distill_app = typer.Typer(no_args_is_help=True, help="Distil the model's judgements into a compact scorer: "
                                                     "`annotate` a dataset with the teacher, then `train` the student.")


@distill_app.command("annotate")
def annotate_cmd(
    dataset: Path = typer.Argument(..., help="Dataset file (any format `vplink eval` reads)."),
    store: Path = typer.Option(..., "--store", help="KB store folder (built by `vplink kb index`)."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="The KB's prefix (when the store holds several)."),
    text_model: Optional[Path] = typer.Option(None, "--text-model",
                                              help="Text model folder (default: the one the store was built with)."),
    llm_url: str = typer.Option(..., "--llm-url", help="OpenAI-compatible (vLLM) server URL."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="Served model name (default: the first)."),
    out: Path = typer.Option(..., "--out", help="Rationales JSONL (appended to; a rerun resumes)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Annotate at most N examples."),
    sample_seed: Optional[int] = typer.Option(None, "--sample-seed", help="With --limit: a seeded random sample."),
    k: int = typer.Option(10, "-k", help="Candidates shown to the teacher."),
    concurrency: int = typer.Option(8, "--concurrency", help="Requests in flight (vLLM batches them)."),
    max_tokens: int = typer.Option(160, "--max-tokens", help="Answer budget per request."),
    llm_timeout: float = typer.Option(600.0, "--llm-timeout", min=0.1, help="Seconds one model request may take."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the run's report JSON here."),
) -> None:
    """Annotate DATASET's examples with the teacher's choice, rationale and scores (gold answers are stripped)."""
    from vplink.agent.llm_client import LLMClient, LLMConfig
    from vplink.core.records import LinkQuery
    from vplink.distill.teacher import annotate
    from vplink.eval.datasets import load_dataset, sample_examples
    from vplink.retrieval.factory import open_retriever
    from vplink.core.jsonl import write_json

    examples = sample_examples(load_dataset(dataset, allow_missing_images=True), limit, sample_seed)
    # the teacher must never see the gold answer: hand it plain queries
    queries = [LinkQuery(**e.model_dump(include=set(LinkQuery.model_fields))) for e in examples]
    llm = LLMClient(LLMConfig(url=llm_url, model=llm_model, max_concurrency=concurrency, timeout_s=llm_timeout,
                              max_retries=1))
    result = annotate(queries, open_retriever(store, prefix=prefix, text_model=text_model), llm, out, k=k, concurrency=concurrency, max_tokens=max_tokens)
    doc = result.model_dump()
    if report:
        write_json(report, doc)
    typer.echo(json.dumps(doc, indent=2))


@distill_app.command("candidates")
def candidates_cmd(
    dataset: Path = typer.Argument(..., help="Dataset file (any format `vplink eval` reads)."),
    store: Path = typer.Option(..., "--store", help="KB store folder (built by `vplink kb index`)."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="The KB's prefix (when the store holds several)."),
    out: Path = typer.Option(..., "--out", help="Candidates JSONL (appended to; a rerun resumes)."),
    k: int = typer.Option(20, "-k", help="Candidates kept per example (the student's hard negatives)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N examples."),
    sample_seed: Optional[int] = typer.Option(None, "--sample-seed", help="With --limit: a seeded random sample."),
) -> None:
    """Write retrieval's top-k candidates of every example of DATASET (no model): the student's training rows."""
    from vplink.core.records import LinkQuery
    from vplink.distill.teacher import candidate_records
    from vplink.eval.datasets import load_dataset, sample_examples
    from vplink.retrieval.factory import open_retriever

    examples = sample_examples(load_dataset(dataset, allow_missing_images=True), limit, sample_seed)
    queries = [LinkQuery(**e.model_dump(include=set(LinkQuery.model_fields))) for e in examples]
    written = candidate_records(queries, open_retriever(store, prefix=prefix), out, k=k)
    typer.echo(f"{written} candidate record(s) written to {out} ({len(queries) - written} already there or without candidates)")


@distill_app.command("train")
def train_cmd(
    records: Path = typer.Argument(..., help="Candidate records (`vplink distill candidates`) or the teacher's "
                                             "rationale records (`vplink distill annotate`)."),
    store: Path = typer.Option(..., "--store", help="KB store folder the records were made with."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="The KB's prefix (when the store holds several)."),
    out: Path = typer.Option(..., "--out", help="Scorer folder (model.safetensors, config.json, metrics.jsonl)."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="Train on this dataset's gold answers (else the teacher's choices)."),
    rationales: Optional[Path] = typer.Option(None, "--rationales",
                                              help="The teacher's rationales as a second target (distilling step-by-step)."),
    rationale_weight: float = typer.Option(0.1, "--rationale-weight", min=0.0,
                                           help="Weight of the rationale target (0: labels only)."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Candidate records of a dev split: early stopping and "
                                                           "every choice are made on it (else a hashed share is held out)."),
    dev_gold: Optional[Path] = typer.Option(None, "--dev-gold", help="The dev split's dataset (its gold answers)."),
    epochs: int = typer.Option(30, "--epochs"),
    lr: float = typer.Option(2e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    dev_fraction: float = typer.Option(0.15, "--dev-fraction"),
    patience: int = typer.Option(6, "--patience"),
    batch_size: int = typer.Option(64, "--batch-size"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Feature cache folder (default: OUT/../.features)."),
) -> None:
    """Train the student scorer on gold answers (--gold) or the teacher's choices, with the teacher's rationales
    as a second target; resumable (a rerun with the same settings continues)."""
    from vplink.distill.losses import LossConfig
    from vplink.distill.train import TrainConfig, train
    from vplink.eval.datasets import load_dataset
    from vplink.retrieval.factory import open_store

    def answers(path: Optional[Path]) -> Optional[dict[str, Optional[str]]]:
        return None if path is None else {e.id: e.answer for e in load_dataset(path, allow_missing_images=True)}

    if dev_gold is not None and dev is None:
        raise typer.BadParameter("--dev-gold needs --dev (the dev split's candidate records)")
    config = TrainConfig(epochs=epochs, lr=lr, seed=seed, dev_fraction=dev_fraction, patience=patience,
                         batch_size=batch_size, loss=LossConfig(rationale=rationale_weight))
    summary = train(records, open_store(store, prefix=prefix), out, gold=answers(gold), rationales=rationales,
                    dev_path=dev, dev_gold=answers(dev_gold), config=config, cache_dir=cache)
    typer.echo(json.dumps(summary, indent=2))


@distill_app.command("bench-teacher")
def bench_teacher_cmd(
    rationales: Path = typer.Argument(..., help="Teacher rationales over the evaluation sample."),
    gold: Path = typer.Option(..., "--gold", help="The dataset the sample was drawn from (gold answers)."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json and predictions.jsonl."),
    limit: Optional[int] = typer.Option(None, "--limit", help="The sample size used by `annotate`/`eval`."),
    sample_seed: Optional[int] = typer.Option(None, "--sample-seed"),
    runs: list[Path] = typer.Option([], "--run", help="Eval run folders to measure agreement with the teacher."),
) -> None:
    """Score the teacher as a linker (its choice first, then its scores) and its agreement with other runs."""
    import numpy as np

    from vplink.distill.rationales import RationaleRecord, disagreement_with_retrieval
    from vplink.eval.datasets import load_dataset, sample_examples
    from vplink.core.provenance import provenance
    from vplink.eval.harness import read_predictions
    from vplink.core.records import RankedEntity
    from vplink.eval.metrics import Prediction, compute_metrics
    from vplink.core.jsonl import iter_jsonl, write_json, write_jsonl

    examples = sample_examples(load_dataset(gold, allow_missing_images=True), limit, sample_seed)
    answers = {e.id: e.answer for e in examples}
    records = {o["id"]: RationaleRecord.model_validate(o) for _, o in iter_jsonl(rationales) if o["id"] in answers}
    if not records:
        raise typer.BadParameter(f"no record of {rationales} is in the sample")
    scored = {k: v for k, v in answers.items() if k in records}

    def preds(nil_aware: bool) -> list[Prediction]:
        return [Prediction(id=r.id, ranking=[RankedEntity(id=c, score=r.scores.get(c, 0.0)) for c in r.teacher_ranking()],
                           nil=nil_aware and r.is_nil, candidates=r.candidates,
                           latency_ms={"teacher": r.seconds * 1000}) for r in records.values()]

    doc = {"n_sample": len(answers), "n_annotated": len(records),
           "teacher_models": sorted({r.model for r in records.values()}),
           "prompt_versions": sorted({r.prompt_version for r in records.values()}),
           "teacher_nil_rate": sum(r.is_nil for r in records.values()) / len(records),
           "teacher_s_per_query_p50": float(np.percentile([r.seconds for r in records.values()], 50)),
           "mean_completion_tokens": sum(r.completion_tokens for r in records.values()) / len(records),
           # NIL counted as the teacher says (a miss at every k), and ignored (its ranking kept)
           "metrics": compute_metrics(preds(True), scored).model_dump(),
           "metrics_nil_ignored": compute_metrics(preds(False), scored).model_dump(),
           "note": "the teacher saw the top-k retrieved candidates only, so its Hits@k for k > its k equal Hits@k",
           "disagreement_with_retrieval": disagreement_with_retrieval(list(records.values()), answers),
           "provenance": provenance()}
    agreement = {}
    for run in runs:
        predictions = read_predictions(run / "predictions.jsonl")
        both = [i for i in records if i in predictions and predictions[i].ranking and not records[i].is_nil]
        agree = sum(predictions[i].ranking[0].id == records[i].choice for i in both)
        subset = {i: scored[i] for i in scored if i in predictions}
        agreement[str(run)] = {"n": len(both), "top1_agreement": agree / len(both) if both else None,
                               # the run scored on exactly the examples the teacher annotated
                               "metrics_on_teacher_subset": compute_metrics(
                                   [predictions[i] for i in subset], subset).model_dump(include={"hits", "mrr", "n"})}
    doc["agreement_with_runs"] = agreement
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "predictions.jsonl", preds(True))
    write_json(out / "metrics.json", doc)
    typer.echo(json.dumps({k: doc[k] for k in ("n_annotated", "teacher_nil_rate", "agreement_with_runs",
                                                "disagreement_with_retrieval")}, indent=2))
    typer.echo(json.dumps(doc["metrics"]["hits"]) + f" MRR {doc['metrics']['mrr']}")


if __name__ == "__main__":  # `python -m vplink.cli_distill ...` until the front door mounts it
    distill_app()
