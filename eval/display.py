"""Notebook views of evaluation runs: one run's metrics, plot and worst errors, or runs side by side with deltas.

The HTML is self-contained (plots inlined as base64 PNG) and every piece of text is escaped. The worst
errors come from the run's errors.json, which the harness writes with the gold answers it alone knows.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from vplink.eval.error_analysis import ERRORS, ErrorAnalysis, RankedRow
from vplink.eval.rows import comparison_rows, data_warning


class RunView(Protocol):
    """What the views read of a run: ``vplink.eval.compare.EvalRun`` fits (it imports this module, not back)."""

    path: Path
    metrics: dict[str, Any]
    name: str

    @property
    def label(self) -> str: ...

#: How many of the worst errors a run's view lists (errors.json holds up to 20).
WORST_SHOWN = 10
#: Metrics where a smaller number is the better one (their deltas are coloured the other way round).
_LOWER_IS_BETTER = re.compile(r"(^errors$| ms$)")

# Table rules name table.vp-table so that they outrank JupyterLab's own output table style.
STYLE = """<style>
.vplink-eval{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:13px;line-height:1.4;
 max-width:1100px}
.vplink-eval h3{font-size:16px;margin:4px 0 6px 0}
.vplink-eval h4{font-size:13px;margin:12px 0 4px 0;text-transform:uppercase;letter-spacing:.04em;color:#666}
.vplink-eval .vp-row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.vplink-eval table.vp-table{border-collapse:collapse;margin:2px 0;table-layout:auto}
.vplink-eval table.vp-table tbody tr{background:transparent}
.vplink-eval table.vp-table th,.vplink-eval table.vp-table td{border:1px solid #ddd;padding:2px 6px;text-align:left;
 vertical-align:top;line-height:1.4}
.vplink-eval table.vp-table th{background:rgba(127,127,127,.12);font-weight:600}
.vplink-eval table.vp-table td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.vplink-eval img{border:1px solid #ccc;max-width:100%;height:auto}
.vplink-eval .vp-muted{color:#777}
.vplink-eval .vp-note{color:#8a6d3b;background:rgba(255,193,7,.14);padding:3px 6px;border-radius:3px;
 display:inline-block;margin:2px 0}
.vplink-eval .vp-up{color:#1e7e34}
.vplink-eval .vp-down{color:#c82333}
.vplink-eval .vp-gold{font-weight:600;color:#1e7e34}
.vplink-eval .vp-text{max-width:360px;color:#555}
.vplink-eval .vp-id{white-space:nowrap}
.vplink-eval pre{white-space:pre-wrap;font-size:12px;margin:2px 0}
.vplink-eval details{margin-top:6px}
</style>"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes too)."""
    return html.escape(str(value), quote=True)


def note(text: str) -> str:
    """A highlighted one-line note."""
    return f'<div class="vp-note">{esc(text)}</div>'


def png_data_uri(data: bytes) -> str:
    """A ``data:image/png`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = ()) -> str:
    """An HTML table; ``headers`` are escaped here, ``rows`` cells must already be HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="vp-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# --------------------------------------------------------------------------------------- one run


def run_html(run: RunView, *, worst: int = WORST_SHOWN) -> str:
    """A self-contained HTML view of one finished run: metrics, the Hits@k plot, the worst errors."""
    metrics = run.metrics
    title = f"{run.name}: {metrics.get('pipeline', '?')} on {Path(str(metrics.get('dataset', '?'))).name}"
    # Per-stage p50 rows are left to the latency table below, which adds p95.
    rows = [[esc(metric), esc(cells[0])] for metric, cells in comparison_rows([run.metrics])
            if not metric.endswith(" p50 ms")]
    left = "<h4>Metrics</h4>" + table(["metric", "value"], rows, numeric=[1])
    left += _latency_table(metrics) + _by_type_table(metrics)
    plot = run.path / "hits.png"
    if plot.is_file():
        uri = png_data_uri(plot.read_bytes())
        right = f'<h4>Hits@k</h4><img src="{uri}" alt="Hits@k plot of {esc(run.name)}">'
    else:
        right = note("No hits.png in the run folder.")
    parts = [STYLE, '<div class="vplink-eval">', f"<h3>{esc(title)}</h3>",
             f'<div class="vp-muted">{esc(run.path)}</div>',
             f'<div class="vp-row"><div>{left}</div><div>{right}</div></div>',
             _errors(run, worst), _versions(metrics), "</div>"]
    return "".join(parts)


def _latency_table(metrics: dict[str, Any]) -> str:
    latency = metrics.get("latency_ms") or {}
    if not latency:
        return ""
    rows = [[esc(stage), f"{(s or {}).get('p50', 0):,.1f}", f"{(s or {}).get('p95', 0):,.1f}"]
            for stage, s in latency.items()]
    return "<h4>Latency (ms)</h4>" + table(["stage", "p50", "p95"], rows, numeric=[1, 2])


def _by_type_table(metrics: dict[str, Any]) -> str:
    groups = metrics.get("by_type") or {}
    if not groups:
        return ""
    rows = [[esc(name), str(g.get("n", "")), _pct((g.get("hits") or {}).get("1")),
             _pct((g.get("hits") or {}).get("5")), f"{g.get('mrr', 0):.3f}"] for name, g in groups.items()]
    return "<h4>By entity type</h4>" + table(["type", "n", "Hits@1", "Hits@5", "MRR"], rows, numeric=[1, 2, 3, 4])


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _errors(run: RunView, worst: int) -> str:
    path = run.path / ERRORS
    if not path.is_file():
        return "<h4>Errors</h4>" + note(f"No {ERRORS} in the run folder (a run older than the file: its "
                                        "report.md has the analysis).") + _failed(run)
    try:
        analysis = ErrorAnalysis.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return "<h4>Errors</h4>" + note(f"{path} cannot be read ({exc})")
    parts = ["<h4>Where the errors come from</h4>"]
    if not analysis.wrong:
        parts.append("<div>Every top-1 answer is right.</div>")
        return "".join(parts)
    parts.append(f"<div>{analysis.wrong} of {analysis.queries} queries have a wrong top-1 answer.</div>")
    parts.append(table(["class", "errors", "share", "meaning"],
                       [[esc(c.name), str(c.errors), f"{c.share:.1%}", esc(c.meaning)] for c in analysis.classes],
                       numeric=[1, 2]))
    shown = analysis.worst[:worst]
    parts.append(f"<h4>The {len(shown)} worst errors</h4>")
    rows = []
    for item in shown:
        said = _quoted(item.mention) if item.mention else "(visual prompt only)"
        if item.text:
            said += f'<br><span class="vp-text">{_quoted(item.text)}</span>'
        if item.error is not None:
            answered = f"failed: <code>{esc(item.error)}</code>"
        elif item.answered_nil:
            answered = "NIL"
        else:
            answered = "<br>".join(_ranked(row) for row in item.ranking[:3]) or "nothing"
        gold = "NIL" if item.gold_id is None else f"{esc(item.gold_name)} <code>{esc(item.gold_id)}</code>"
        gold += f", rank {item.gold_rank if item.gold_rank is not None else 'none (miss)'}"
        rows.append([str(item.number), f'<code class="vp-id">{esc(item.query_id)}</code>', esc(item.error_class),
                     said, gold, answered])
    parts.append(table(["#", "query", "class", "mention / text", "gold", "top answers"], rows, numeric=[0]))
    if len(analysis.worst) > len(shown):
        parts.append(f'<div class="vp-muted">{len(analysis.worst) - len(shown)} more in {esc(path)}</div>')
    return "".join(parts)


def _quoted(text: str) -> str:
    return esc(f'"{text}"')


def _ranked(row: RankedRow) -> str:
    """One row of a worst error's ranking: rank, name, entity and score (the gold marked)."""
    text = f"{row.rank}. {esc(row.name)} <code>{esc(row.id)}</code> · {row.score:.3f}"
    return f'<span class="vp-gold">{text} ✓ gold</span>' if row.gold else text


def _failed(run: RunView) -> str:
    try:
        failed = [(qid, p.error) for qid, p in run.predictions.items() if p.error]
    except Exception as exc:  # noqa: BLE001 - an unreadable predictions file is reported, not raised
        return note(f"predictions.jsonl cannot be read ({exc})")
    if not failed:
        return ""
    rows = [[f"<code>{esc(qid)}</code>", esc(error)] for qid, error in failed[:WORST_SHOWN]]
    return f"<div>{len(failed)} queries failed:</div>" + table(["query", "error"], rows)


def _versions(metrics: dict[str, Any]) -> str:
    versions = metrics.get("versions")
    if not versions:
        return ""
    text = json.dumps(versions, indent=2, ensure_ascii=False, default=str)
    return f"<details><summary>Versions (models, prompts, data, code)</summary><pre>{esc(text)}</pre></details>"


# --------------------------------------------------------------------------------------- runs side by side


def comparison_html(runs: Sequence[RunView]) -> str:
    """Runs side by side: the metrics with each later run's delta against the first, and their Hits@k curves."""
    if not runs:
        return note("No runs to compare.")
    headers = ["metric"] + [run.label for run in runs]
    rows = [[esc(metric)] + [_delta_cell(metric, cell) for cell in cells] for metric, cells in comparison_rows([run.metrics for run in runs])]
    parts = [STYLE, '<div class="vplink-eval">', f"<h3>{len(runs)} runs compared (deltas against the first)</h3>"]
    caption = data_warning([run.metrics for run in runs])
    if caption:
        parts.append(note(caption))
    body = table(headers, rows, numeric=list(range(1, len(runs) + 1)))
    parts.append(f'<div class="vp-row"><div>{body}</div><div>{_overlay_plot(runs)}</div></div>')
    paths = "".join(f"<li>{esc(run.label)}: <code>{esc(run.path)}</code></li>" for run in runs)
    parts.append(f'<ul class="vp-muted">{paths}</ul></div>')
    return "".join(parts)


def _delta_cell(metric: str, cell: str) -> str:
    """A comparison cell with its delta coloured: green where the later run is better, red where worse."""
    match = re.match(r"^(.*) \(([+-])(.*)\)$", cell)
    if not match:
        return esc(cell)
    value, sign, magnitude = match.groups()
    if metric in ("n",) or re.fullmatch(r"0(\.0+)?( pp)?", magnitude):
        css = "vp-muted"
    else:
        better = (sign == "+") != bool(_LOWER_IS_BETTER.search(metric))
        css = "vp-up" if better else "vp-down"
    return f'{esc(value)} <span class="{css}">({esc(sign + magnitude)})</span>'


def _overlay_plot(runs: Sequence[RunView]) -> str:
    """Every run's Hits@k curve on one set of axes, as an inline PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.6, 3.3), dpi=100)
    FigureCanvasAgg(figure)  # no pyplot: the notebook's own backend and state stay untouched
    axes = figure.add_subplot()
    drawn, all_ks = 0, set()
    for run in runs:
        hits = run.metrics.get("hits") or {}
        ks = sorted(int(k) for k, v in hits.items() if v is not None)
        if ks:
            axes.plot(ks, [100 * hits[str(k)] for k in ks], marker="o", label=run.label)
            drawn += 1
            all_ks.update(ks)
    if not drawn:
        return note("No Hits@k to plot.")
    axes.set_xticks(sorted(all_ks))
    axes.set_xlabel("k")
    axes.set_ylabel("Hits@k (%)")
    axes.set_ylim(0, 105)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title("Hits@k", fontsize=10)
    figure.subplots_adjust(left=0.14, right=0.97, bottom=0.15, top=0.9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return f'<img src="{png_data_uri(buffer.getvalue())}" alt="Hits@k of the compared runs">'
