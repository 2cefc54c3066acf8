"""`vplink eval`: run a pipeline over a dataset (`vplink eval DATASET ...`) and compare runs (`vplink eval compare`)."""

from __future__ import annotations

import importlib
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from vplink.cli_options import linker_settings, say_model_server, with_linker_flags
from vplink.console import data_console
from vplink.core.errors import VplinkError
from vplink.core.jsonl import iter_jsonl
from vplink.eval.compare import compare_markdown, compare_runs, load_run
from vplink.eval.datasets import FORMATS, file_sha1, read_dataset, sample_examples
from vplink.eval.harness import METRICS, PLOT, REPORT, run_eval


class _DefaultRunGroup(TyperGroup):
    """A group whose first argument, when it names no subcommand, is the dataset of the default `run` command."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `vplink eval DATASET --store ...` reads as `vplink eval run DATASET --store ...`;
        # click groups cannot take a positional before their subcommands, so route it here.
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_DefaultRunGroup,
    no_args_is_help=True,
    help="Evaluate a pipeline on a dataset (`vplink eval DATASET --store DIR --pipeline P`), "
         "or compare finished runs (`vplink eval compare RUN_A RUN_B`).",
)

_err = data_console(stderr=True)
_out = data_console()


class Pipeline(str, Enum):
    """The pipelines `vplink eval` can run."""

    retrieve = "retrieve"
    rerank = "rerank"
    agent = "agent"
    joint = "joint"


def resolve_builder() -> Callable[..., Any]:
    """The predictor factory ``build(pipeline, settings, replay_from)``: the pipeline's settings checked, the
    linker opened (:func:`vplink.open_linker`) and wrapped in the pipeline's predictor."""
    try:
        module = importlib.import_module("vplink.eval.pipelines")
    except ModuleNotFoundError as exc:
        if exc.name != "vplink.eval.pipelines":
            raise
        raise VplinkError("no pipelines are installed (eval/pipelines.py is missing). "
                          "Fix: install vplink with its eval pipelines") from None
    from vplink.wiring import open_linker

    def build(pipeline: str, settings, replay_from: str | None = None):
        settings = module.check_pipeline(pipeline, settings, replay_from)
        return module.build_predictor(pipeline, open_linker(settings), replay_from=replay_from)

    return build


@eval_app.command("run")
@with_linker_flags
def run_command(
    dataset: Path = typer.Argument(..., help="Dataset file: vplink JSONL, MELBench, WikiDiverse or VPWiki JSON."),
    pipeline: Pipeline = typer.Option(..., "--pipeline", "-p", help="Which pipeline to evaluate."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Run folder (default runs/<dataset>-<pipeline>); resumed if it exists."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only N examples."),
    sample_seed: Optional[int] = typer.Option(None, "--sample-seed",
                                              help="With --limit: a seeded random sample instead of the first N."),
    fmt: str = typer.Option("auto", "--format", help=f"Dataset format: auto, {', '.join(FORMATS)}."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the dataset's images."),
    allow_missing_images: bool = typer.Option(False, "--allow-missing-images",
                                              help="Keep examples whose image is missing, without an image."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid",
                                      help="Evaluate the valid lines of a vplink JSON Lines file and list the others."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Batches run at once."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Queries per predictor call."),
    kb: Optional[Path] = typer.Option(None, "--kb", help="KB JSONL for entity names and types in the report."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip queries already predicted in --out."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="On resume, predict failed queries again."),
    option: list[str] = typer.Option([], "--option", "-O", help="Extra pipeline option KEY=VALUE (repeatable)."),
    no_mention: bool = typer.Option(False, "--no-mention",
                                    help="Hide every mention: the VP-MEL setting, where the box is the mention."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint",
                                              help="SQLite file: the agent resumes mid-query after a crash."),
    restart: bool = typer.Option(False, "--restart", help="Start the run in --out over, dropping its predictions."),
    allow_unknown_gold: bool = typer.Option(False, "--allow-unknown-gold",
                                            help="With --kb: run even when gold answers are not in the KB "
                                                 "(they count as misses and are listed in the report)."),
    *, linker_flags: dict[str, Any],
) -> None:
    """Run a pipeline over a dataset and write predictions, metrics.json, report.md and hits.png."""
    try:
        options = _parse_options(option)
        loaded = read_dataset(dataset, fmt, images, allow_missing_images=allow_missing_images,
                              skip_invalid=skip_invalid)
        for skipped in loaded.skipped:
            _err.print("[yellow]skipped[/]", escape(skipped.reason), highlight=False)
        if loaded.missing_images:
            _err.print(f"[yellow]warning:[/] {len(loaded.missing_images)} example(s) have no image file; "
                       "they run on text only")
        examples = sample_examples(loaded.examples, limit, sample_seed)
        if no_mention:
            examples = [e.model_copy(update={"mention": None}) for e in examples]
        names, types = _kb_names_types(kb) if kb else (None, None)
        types = types or None  # a KB without types gives no by-type table rather than one "unknown" row
        if kb and not allow_unknown_gold:
            _refuse_unknown_gold(examples, names, kb)
        replay_from = options.get("replay_from") or None  # the harness's own option; the rest set the linker
        settings = linker_settings(**linker_flags, checkpoint=checkpoint,
                                   **{key: v for key, v in options.items() if key != "replay_from" and v != ""})
        if pipeline in (Pipeline.agent, Pipeline.joint):
            say_model_server(settings, _err)
        predictor = resolve_builder()(pipeline.value, settings, replay_from)
        kb_ids = set(names) if names else set(getattr(predictor, "entity_names", None) or {}) or None
        names = names or getattr(predictor, "entity_names", None)
        types = types or getattr(predictor, "entity_types", None)
        run_dir = out or Path("runs") / f"{dataset.stem}-{pipeline.value}"
        shown = {"store": settings.store, "k": settings.k, "scorer": str(settings.scorer) if settings.scorer else None,
                 "llm_url": settings.llm_url, "invalid_lines_skipped": len(loaded.skipped), "no_mention": no_mention,
                 "format": loaded.format, "limit": limit, "sample_seed": sample_seed,
                 "images": str(images) if images else None, **{f"option {key}": v for key, v in options.items()}}
        # Everything besides the predictor's own versions (store, encoders, fusion, prompts) that shapes a
        # prediction: a resumed run must have been made with the same.
        from vplink.retrieval.store import is_url

        location = settings.store
        identity = {"store": location if is_url(location) else str(Path(location).resolve()), "prefix": settings.prefix,
                    "k": settings.k, "scorer": _scorer_identity(settings.scorer), "llm_url": settings.llm_url,
                    "llm_model": settings.llm_model, "vision": settings.vision, "no_mention": no_mention,
                    "text_model": str(settings.text_model.resolve()) if settings.text_model else None,
                    "format": loaded.format, "images": str(images.resolve()) if images else None,
                    "options": options, "calibration": _file_identity(settings.calibration),
                    "nil": settings.nil, "nil_threshold": settings.nil_threshold}
        result = run_eval(examples, predictor, run_dir, pipeline=pipeline.value, dataset=str(dataset),
                          versions={}, concurrency=concurrency, batch_size=batch_size,
                          resume=resume and not restart, retry_errors=retry_errors, dataset_path=dataset,
                          entity_names=names, types=types, settings=shown, identity=identity, kb_ids=kb_ids)
    except VplinkError as exc:
        _fail(exc)
    _out.print(compare_runs([load_run(run_dir)]))
    _out.print(escape(f"{result['errors']} failed queries. Wrote {run_dir / METRICS}, {run_dir / REPORT}, "
                      f"{run_dir / PLOT}"))


@eval_app.command("box-report")
def box_report_command(
    run_dir: Path = typer.Argument(..., help="A run folder made with --no-mention on a dataset with boxes."),
    dataset: Path = typer.Argument(..., help="The same dataset, whose mentions say whom each box marks."),
    fmt: str = typer.Option("auto", "--format", help=f"Dataset format: auto, {', '.join(FORMATS)}."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the dataset's images."),
) -> None:
    """VP-MEL measures of a run: span recall, box-to-span accuracy, H@k, whether boxes change answers."""
    from vplink.eval.box_report import BOX_REPORT, write_box_report

    try:
        loaded = read_dataset(dataset, fmt, images, allow_missing_images=True)
        report = write_box_report(run_dir, loaded.examples)
    except VplinkError as exc:
        _fail(exc)
    _out.print_json(data=report)
    _out.print(f"Wrote {run_dir / BOX_REPORT}")


@eval_app.command("calibrate")
def calibrate_command(
    runs: list[Path] = typer.Argument(..., help="Finished run folders of ONE pipeline on a dev split (e.g. the plain "
                                                "dev run and a run on its KB-ablated copy, for NIL answers)."),
    out: Path = typer.Option(..., "--out", "-o", help="The calibration file to write (JSON)."),
    max_h1_cost: float = typer.Option(0.02, "--max-h1-cost", min=0.0, max=1.0,
                                      help="The most in-KB Hits@1 the NIL threshold may cost on the runs."),
    c: float = typer.Option(1.0, "--c", min=1e-6, help="Inverse strength of the logistic model's L2 penalty."),
) -> None:
    """Fit the confidence calibrator (P(top-1 is right)) and the NIL threshold on finished dev runs; pass the file
    with --calibration, or keep it as calibration.json in a scorer's folder."""
    from vplink.eval.calibration import fit_calibrator, run_rows

    try:
        loaded = [run_rows(run) for run in runs]
        rerankers = {source["reranker"] for _, source in loaded}
        if len(rerankers) > 1:
            raise VplinkError(f"the runs rank with different scores ({', '.join(sorted(rerankers))}). Fix: calibrate "
                              "each reranker on its own runs")
        calibrator = fit_calibrator([row for rows, _ in loaded for row in rows], reranker=rerankers.pop(),
                                    max_h1_cost=max_h1_cost, c=c, fitted_on=[source for _, source in loaded])
        calibrator.save(out)
    except VplinkError as exc:
        _fail(exc)
    _out.print_json(data={kind: {"nil_threshold": model.nil_threshold, **model.metrics}
                          for kind, model in calibrator.kinds.items()})
    _out.print(f"Wrote {escape(str(out))}")


@eval_app.command("compare")
def compare_command(
    runs: list[Path] = typer.Argument(..., help="Run folders (each holding metrics.json); the first is the baseline."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a markdown table instead of a rich one."),
) -> None:
    """Compare finished runs side by side, with deltas against the first."""
    try:
        loaded = [load_run(path) for path in runs]
    except VplinkError as exc:
        _fail(exc)
    if markdown:
        typer.echo(compare_markdown(loaded), nl=False)
    else:
        _out.print(compare_runs(loaded))


def _fail(exc: Exception) -> None:
    _err.print("[red]error:[/]", escape(str(exc)))
    raise typer.Exit(2)  # the same status as `vplink` gives any VplinkError


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise VplinkError(f"bad --option {pair!r}. Fix: write KEY=VALUE, e.g. --option k_rerank=10")
        options[key.strip()] = value
    return options


def _scorer_identity(scorer: Path | None) -> dict[str, str] | None:
    """The scorer's folder and a hash of its weights: a retrained scorer in the same folder differs."""
    if scorer is None:
        return None
    from vplink.retrieval.fingerprint import weights_fingerprint

    return {"path": str(scorer.resolve()), "weights": weights_fingerprint(scorer)}


def _refuse_unknown_gold(examples, names: dict[str, str] | None, kb: Path) -> None:
    """Refuse a dataset whose gold answers name entities the KB does not hold (they could never be found)."""
    from vplink.eval.harness import unknown_gold

    missing = unknown_gold(examples, set(names or {}))
    if missing["queries"]:
        shown = ", ".join(missing["ids"][:10]) + (" ..." if len(missing["ids"]) > 10 else "")
        raise VplinkError(f"{missing['queries']} of {len(examples)} gold answers name {len(missing['ids'])} "
                          f"entities that are not in the KB {kb} ({shown}). Fix: evaluate against the KB the "
                          "dataset was made for, or pass --allow-unknown-gold to count them as misses")


def _file_identity(path: Path | None) -> dict[str, str] | None:
    """A file's resolved path and content hash: a resumed run must use the same file, not just the same name."""
    return {"path": str(path.resolve()), "sha1": file_sha1(path)} if path is not None and path.is_file() else None


def _kb_names_types(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Names and types of the KB's entities, read without validating the whole KB again."""
    names: dict[str, str] = {}
    types: dict[str, str] = {}
    for _, row in iter_jsonl(path):
        if isinstance(row, dict) and "id" in row:
            names[str(row["id"])] = str(row.get("name", ""))
            if row.get("type"):
                types[str(row["id"])] = str(row["type"])
    return names, types
