"""Loading finished runs and comparing their metrics side by side, with deltas against the first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from vplink.core.errors import InputFileError
from vplink.eval.error_analysis import ERRORS
from vplink.eval.harness import METRICS, PLOT, PREDICTIONS, REPORT, read_predictions
from vplink.eval.metrics import Prediction
from vplink.eval.rows import comparison_rows, data_warning


@dataclass
class EvalRun:
    """One finished run: its metrics, the paths of its files, and its predictions (read on first use)."""

    path: Path
    metrics: dict[str, Any]
    name: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    @cached_property
    def predictions(self) -> dict[str, Prediction]:
        """The run's predictions keyed by query id."""
        return read_predictions(self.path / PREDICTIONS)

    @property
    def label(self) -> str:
        """A short column title: the run folder's name and its pipeline."""
        pipeline = self.metrics.get("pipeline")
        return f"{self.name} ({pipeline})" if pipeline and pipeline != self.name else self.name

    def _repr_html_(self) -> str:
        from vplink.eval.display import run_html  # lazy: matplotlib only when a notebook asks

        return run_html(self)


def load_run(run_dir: str | Path) -> EvalRun:
    """Open a run folder written by ``run_eval`` (it must hold metrics.json)."""
    path = Path(run_dir)
    metrics_path = path / METRICS
    if not metrics_path.is_file():
        raise InputFileError(metrics_path, "no metrics.json: not a finished evaluation run",
                             fix="pass the --out folder of a `vplink eval` run that finished (re-run it to resume)")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(metrics_path, f"unreadable metrics ({exc})",
                             fix="re-run the evaluation to rewrite it") from None
    if not isinstance(metrics, dict) or "hits" not in metrics:
        raise InputFileError(metrics_path, "not a vplink metrics file (no 'hits')", field="hits",
                             fix="pass the --out folder of a `vplink eval` run")
    files = {name: path / name for name in (METRICS, PREDICTIONS, REPORT, ERRORS, PLOT) if (path / name).exists()}
    return EvalRun(path=path, metrics=metrics, name=path.resolve().name, files=files)


@dataclass
class Comparison:
    """Finished runs side by side; a notebook shows the metrics with deltas against the first run."""

    runs: list[EvalRun]

    def table(self) -> Table:
        """The comparison as a rich table (what `vplink eval compare` prints)."""
        return compare_runs(self.runs)

    def markdown(self) -> str:
        """The comparison as a markdown table."""
        return compare_markdown(self.runs)

    def __repr__(self) -> str:
        return f"<Comparison of {len(self.runs)} runs: {', '.join(run.label for run in self.runs)}>"

    def __str__(self) -> str:
        return self.markdown()

    def _repr_html_(self) -> str:
        from vplink.eval.display import comparison_html

        return comparison_html(self.runs)


def compare(runs: Sequence[EvalRun | str | Path]) -> Comparison:
    """Compare finished runs (loaded runs or run folders); deltas are against the first."""
    loaded = [run if isinstance(run, EvalRun) else load_run(run) for run in runs]
    if not loaded:
        raise ValueError("compare needs at least one run")
    return Comparison(loaded)


def compare_runs(runs: Sequence[EvalRun]) -> Table:
    """A rich table of the runs' metrics, later runs showing their delta against the first."""
    title = "vplink eval" if len(runs) == 1 else "vplink eval: comparison (deltas vs. the first run)"
    table = Table(title=title)
    table.add_column("metric")
    for run in runs:
        table.add_column(escape(run.label), justify="right")  # a folder name is data, not markup
    for metric, cells in comparison_rows([run.metrics for run in runs]):
        table.add_row(escape(metric), *map(escape, cells))
    caption = data_warning([run.metrics for run in runs])
    if caption:
        table.caption = caption
    return table


def compare_markdown(runs: Sequence[EvalRun]) -> str:
    """The same comparison as a markdown table."""
    lines = ["| metric | " + " | ".join(run.label for run in runs) + " |",
             "| --- |" + " --- |" * len(runs)]
    metrics = [run.metrics for run in runs]
    lines += [f"| {metric} | " + " | ".join(cells) + " |" for metric, cells in comparison_rows(metrics)]
    caption = data_warning(metrics)
    return "\n".join(lines + ([f"\n{caption}"] if caption else [])) + "\n"
