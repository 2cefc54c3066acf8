"""The notebook views of real evaluation runs: one run's metrics, plot and worst errors; runs side by side."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest

from vplink.eval.compare import Comparison, compare, load_run
from vplink.eval.datasets import load_dataset
from vplink.eval.display import comparison_html, run_html
from vplink.eval.error_analysis import ErrorAnalysis
from vplink.eval.harness import run_eval
from tests.eval.conftest import WIKIMEL, NameMatchPredictor, name_match_runs
from vplink import load_run as exported_load_run

DATASET = WIKIMEL / "with_images.jsonl"


class Page(HTMLParser):
    """Tags, <img> sources and visible text of an HTML fragment."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.images: list[str] = []
        self.chunks: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return " ".join(self.chunks)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, kb_names):
    """Two real runs of the name-matching ranker on the WikiMEL picture questions: top 20 and top 3."""
    return tuple(name_match_runs(tmp_path_factory.mktemp("runs"), kb_names, {"top20": 20, "top3": 3},
                                 pipeline="name-match"))


def test_run_html_has_the_metrics_and_the_inlined_plot(runs) -> None:
    run = exported_load_run(runs[0])  # what users import renders
    page = Page(run._repr_html_())
    hits = run.metrics["hits"]
    for k in ("1", "5", "20"):
        assert f"Hits@{k}" in page.text and f"{100 * hits[k]:.1f}%" in page.text
    assert f"{run.metrics['mrr']:.3f}" in page.text and "69" in page.text
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png;base64,")
    assert base64.b64decode(page.images[0].split(",", 1)[1]) == (runs[0] / "hits.png").read_bytes()
    assert "script" not in page.tags


def test_report_and_view_render_the_worst_errors_from_errors_json(runs) -> None:
    run = load_run(runs[0])
    analysis = ErrorAnalysis.model_validate_json((runs[0] / "errors.json").read_text(encoding="utf-8"))
    report = (runs[0] / "report.md").read_text(encoding="utf-8")
    # report.md lists the same errors, in the same order, with the same counts
    assert re.findall(r"^### \d+\. `([^`]+)`: (.*)$", report, flags=re.M) == [
        (error.query_id, error.error_class) for error in analysis.worst] != []
    assert sum(c.errors for c in analysis.classes) == analysis.wrong
    assert f"{analysis.wrong} of {analysis.queries} queries" in report
    page = Page(run_html(run, worst=5))
    for error in analysis.worst[:5]:
        assert error.query_id in page.text and error.error_class in page.text
    assert analysis.worst[5].query_id not in page.text
    # The ranker mistakes the one-word mention "Scott" for another Scott; the gold Randolph Scott is named.
    assert "surname-only mention" in page.text and "Randolph Scott" in page.text


def test_a_run_without_error_analysis_or_plot_still_renders(runs, tmp_path) -> None:
    import shutil

    copy = tmp_path / "bare"
    shutil.copytree(runs[0], copy)
    (copy / "errors.json").unlink()
    (copy / "hits.png").unlink()
    page = Page(load_run(copy)._repr_html_())
    assert page.images == [] and "No hits.png" in page.text and "No errors.json" in page.text
    assert "Hits@1" in page.text


def test_comparison_side_by_side_with_coloured_deltas(runs) -> None:
    comparison = compare([runs[0], str(runs[1])])
    assert isinstance(comparison, Comparison)
    assert repr(comparison) == "<Comparison of 2 runs: top20 (name-match), top3 (name-match)>"
    assert str(comparison).startswith("| metric | top20 (name-match) | top3 (name-match) |")
    markup = comparison._repr_html_()
    assert markup == comparison_html(comparison.runs)
    page = Page(markup)
    first, second = (load_run(path).metrics for path in runs)
    assert "top20 (name-match)" in page.text and "top3 (name-match)" in page.text
    # Fewer candidates: Hits@5 can only drop, and the drop is shown in red as a delta in points.
    drop = 100 * (first["hits"]["5"] - second["hits"]["5"])
    assert drop > 0
    assert f'<span class="vp-down">(-{drop:.1f} pp)</span>' in markup
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png;base64,")


def test_compare_needs_a_run() -> None:
    with pytest.raises(ValueError):
        compare([])


def test_report_text_is_escaped(tmp_path, kb_names) -> None:
    # Captions are data, not markup: a caption holding a tag must be shown as text.
    examples = [e.model_copy(update={"mention": None, "text": "<script>alert(1)</script> " + (e.text or "")})
                for e in load_dataset(DATASET)[:5]]
    run_eval(examples, NameMatchPredictor(kb_names), tmp_path, pipeline="name-match", dataset=str(DATASET),
             entity_names=kb_names, progress=False)
    markup = load_run(tmp_path)._repr_html_()
    page = Page(markup)
    assert "<script>" not in markup and "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "script" not in page.tags and '"<script>alert(1)</script> ' in page.text
    assert "gold not retrieved" in page.text
