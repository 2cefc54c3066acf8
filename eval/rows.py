"""The metric rows of a comparison of finished runs, shared by the terminal table and the notebook view.

Works on the runs' metrics (``metrics.json`` as loaded), so the views that print them import no run class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vplink.eval.metrics import KS


def comparison_rows(runs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """One ``(metric, cells)`` row per metric of the runs' metrics; later cells carry their delta against the first."""
    if not runs:
        raise ValueError("compare needs at least one run")
    rows: list[tuple[str, list[str]]] = []
    for k in KS:
        rows.append((f"Hits@{k}", _cells(runs, lambda m, k=k: (m.get("hits") or {}).get(str(k)), pct=True)))
    rows.append(("MRR", _cells(runs, lambda m: m.get("mrr"))))
    rows.append(("recall@candidates", _cells(runs, lambda m: m.get("recall_at_candidates"), pct=True)))
    if any("nil" in metrics for metrics in runs):
        rows.append(("NIL F1", _cells(runs, lambda m: (m.get("nil") or {}).get("f1"), pct=True)))
    rows.append(("n", _cells(runs, lambda m: m.get("n"), integer=True)))
    rows.append(("errors", _cells(runs, lambda m: m.get("errors"), integer=True)))
    rows.append(("throughput q/s", _cells(runs, lambda m: m.get("throughput_qps"), digits=2)))
    stages = sorted({stage for metrics in runs for stage in metrics.get("latency_ms") or {}})
    for stage in stages:
        p50 = lambda m, s=stage: ((m.get("latency_ms") or {}).get(s) or {}).get("p50")  # noqa: E731
        rows.append((f"{stage} p50 ms", _cells(runs, p50, digits=1)))
    return rows


def data_warning(runs: Sequence[Mapping[str, Any]]) -> str:
    """A warning when the runs' metrics come from different data, else ""."""
    # Deltas mean little across different data; say so rather than let the table mislead.
    shas = {((metrics.get("versions") or {}).get("data") or {}).get("dataset_sha1") for metrics in runs}
    sizes = {metrics.get("n") for metrics in runs}
    if len(shas) > 1 or len(sizes) > 1:
        return "Warning: these runs used different data (dataset file or number of queries differ)."
    return ""


def _cells(runs: Sequence[Mapping[str, Any]], get, *, pct: bool = False, integer: bool = False,
           digits: int = 3) -> list[str]:
    values = [get(metrics) for metrics in runs]
    base = values[0]
    cells = []
    for index, value in enumerate(values):
        text = _format(value, pct, integer, digits)
        if index and isinstance(value, (int, float)) and isinstance(base, (int, float)):
            delta = value - base
            sign = "+" if delta >= 0 else "-"
            # A change of a percentage is in percentage points, not a percent of a percent.
            magnitude = f"{100 * abs(delta):.1f} pp" if pct else _format(abs(delta), pct, integer, digits)
            text += f" ({sign}{magnitude})"
        cells.append(text)
    return cells


def _format(value: Any, pct: bool, integer: bool, digits: int) -> str:
    if value is None:
        return "n/a"
    if integer:
        return str(int(value))
    if pct:
        return f"{100 * value:.1f}%" if not isinstance(value, str) else value
    return f"{value:.{digits}f}"
