"""The notebook view of a real linking result: parsed back with the stdlib HTML parser and checked."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from vplink.agent.display import PICTURE_WIDTH, MermaidText, link_result_html
from vplink.agent.linker import Linker
from vplink.agent.state import Description, Judgement, LinkResult
from vplink.wiring import open_linker

BOX = [256, 0, 512, 301]
CAPTION = "Barack Obama <script>alert('x')</script> & Joe Biden"


class Page(HTMLParser):
    """The parts of an HTML fragment the tests look at: tags, <img> sources, and the visible text."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.images: list[dict[str, str]] = []
        self.chunks: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return " ".join(self.chunks)


def decode(uri: str) -> Image.Image:
    head, data = uri.split(",", 1)
    assert head in ("data:image/jpeg;base64", "data:image/png;base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.fixture(scope="module")
def linker(small_store) -> Linker:
    return open_linker(store=small_store.location, k=10)


@pytest.fixture(scope="module")
def photo(shared_data: Path) -> Path:
    return shared_data / "people" / "images" / "two_people.jpg"


@pytest.fixture(scope="module")
def result(linker: Linker, photo: Path) -> LinkResult:
    return linker.link(photo, box=BOX, text=CAPTION)


def test_html_shows_the_marked_picture_and_the_zoomed_region(result: LinkResult, photo: Path) -> None:
    page = Page(result._repr_html_())
    assert len(page.images) == 2 and all(img["src"].startswith("data:image/") for img in page.images)
    marked, crop = (decode(img["src"]).convert("RGB") for img in page.images)
    with Image.open(photo) as original:
        assert marked.size == (min(PICTURE_WIDTH, original.width), round(original.height * marked.width /
                                                                          original.width))
    # The red box is drawn just inside its left edge (x = 256); the picture there is not red.
    r, g, b = marked.getpixel((257, 150))
    assert r > 170 and g < 100 and b < 100, (r, g, b)
    r, g, b = marked.getpixel((240, 150))
    assert not (r > 170 and g < 100 and b < 100)
    # The crop is the box plus a margin, zoomed: narrower than the picture, no red border in its middle.
    assert crop.width < marked.width and crop.height >= 224
    # Both faces the detector found are mentioned, the marked one with its left-to-right place.
    faces = result.evidence["faces"]
    assert faces["count"] == 2 and faces["marked"] == 1
    assert "2 faces found" in page.text and "2nd of 2 from the left" in page.text


def test_html_lists_every_top_candidate_and_says_no_model_was_used(result: LinkResult) -> None:
    page = Page(link_result_html(result))
    assert len(result.ranking) == 10
    for entity in result.ranking:
        assert entity.id in page.text and entity.name in page.text
    assert "No model was used" in page.text
    for stage in result.timings_ms:
        assert stage in page.text
    # The per-channel ranks: each channel of the best candidate heads a column.
    for channel in result.ranking[0].hits:
        assert channel.replace(">", " › ") in page.text


def test_text_is_escaped_not_interpreted(result: LinkResult) -> None:
    markup = result._repr_html_()
    page = Page(markup)
    assert "script" not in page.tags
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert CAPTION in page.text  # shown literally


def test_the_model_description_and_rationale_are_shown(result: LinkResult) -> None:
    described = result.model_copy(update={
        "used_model": "tiny-vlm",
        "description": Description(entity_type="person", names=["Joe Biden"], evidence=["grey hair", "dark suit"],
                                   rationale="The <b>second</b> face & the caption's order agree.", confidence=0.8),
        "judgement": Judgement(choice=result.ranking[0].id, rationale="Still the best fit.",
                               scores={result.ranking[0].id: 0.9})})
    markup = link_result_html(described)
    page = Page(markup)
    assert "The <b>second</b> face & the caption's order agree." in page.text
    assert "<b>second</b>" not in markup
    assert "No model was used" not in page.text
    assert "tiny-vlm" in page.text and "Still the best fit." in page.text and "grey hair" in page.text


@pytest.mark.parametrize("kind", ["missing", "not an image"])
def test_an_unreadable_picture_degrades_to_a_note(result: LinkResult, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "photo.jpg"
    if kind == "not an image":
        path.write_bytes(b"these bytes are no JPEG")
    moved = result.model_copy(update={"query": result.query.model_copy(update={"image": str(path)})})
    page = Page(moved._repr_html_())
    assert page.images == []
    assert "cannot be shown" in page.text and str(path) in page.text
    assert result.ranking[0].name in page.text  # the rest still renders


def test_text_only_result_and_short_repr(linker: Linker) -> None:
    result = linker.link(text="Joe Biden in Delaware", mention="Joe Biden")
    page = Page(result._repr_html_())
    assert page.images == [] and "text only" in page.text
    assert len(repr(result)) < 300 and "<div" not in repr(result)
    assert result.headline in page.text and result.headline in repr(result)  # answer and confidence, first


def test_a_nil_answer_reads_as_nil_with_its_nearest_miss(linker: Linker) -> None:
    result = linker.link(text="Zyxwv Qrstuv opens the exhibition", mention="Zyxwv Qrstuv")
    assert result.nil and result.ranking
    page = Page(result._repr_html_())
    assert "NIL: not in the knowledge base" in page.text and f"nearest: {result.ranking[0].name}" in page.text


def test_mermaid_text_renders_as_a_diagram_without_a_web_service(linker: Linker) -> None:
    graph = linker.mermaid()
    assert isinstance(graph, MermaidText) and isinstance(graph, str)
    block = graph._repr_markdown_()
    assert block.startswith("```mermaid\n") and block.endswith("\n```") and "decide" in block
    # No HTML form: JupyterLab would prefer it to the markdown and show text instead of the diagram.
    assert not hasattr(graph, "_repr_html_")
    assert "mermaid.ink" not in block and "http" not in graph.html()
    assert "&gt;" in graph.html() or ">" not in graph  # escaped arrows


def test_malformed_evidence_becomes_a_note_not_an_exception(result: LinkResult) -> None:
    broken = result.model_copy(update={"evidence": {"image_size": [512, 301], "geometry": {"centre": "??"},
                                                    "faces": {"faces": [{"box": "not a box"}]}}})
    page = Page(broken._repr_html_())
    assert "The evidence cannot be shown" in page.text
    assert len(page.images) == 2  # the picture is still shown, without face outlines
    assert all(entity.name in page.text for entity in result.ranking)
