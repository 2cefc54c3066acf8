"""Notebook views of a linking result: the marked picture, the evidence, the model's reasoning, the candidates.

Everything is one self-contained HTML fragment: pictures are inlined as base64 data URIs and every
piece of text is HTML-escaped. Showing a result never raises: a picture that cannot be read, or a
section that cannot be drawn, becomes a short note in its place.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

# The views take a `vplink.agent.state.LinkResult` as `result: Any`: state imports this module for
# `LinkResult._repr_html_`, so importing state here (even for types) would close an import cycle.

#: The marked picture is shown at most this wide (px); a wider one is downscaled so notebooks stay light.
PICTURE_WIDTH = 560
#: The zoomed crop is shown at most this wide (px).
CROP_WIDTH = 300
#: How many candidates the table lists.
TOP_CANDIDATES = 10
#: Thin outline and number colour of the faces the detector found (the box itself is red).
FACE_COLOUR = (0, 200, 255)
#: Label colour of the marked face's number, so it stands out from the others.
MARKED_FACE_COLOUR = (255, 0, 0)

# Scoped under .vplink so that a notebook's other outputs keep their own look. The table rules name
# table.vp-table so that they outrank JupyterLab's own output table style (right-aligned, striped).
STYLE = """<style>
.vplink{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:13px;line-height:1.4;
 max-width:1100px}
.vplink h3{font-size:16px;margin:4px 0 6px 0}
.vplink h4{font-size:13px;margin:12px 0 4px 0;text-transform:uppercase;letter-spacing:.04em;color:#666}
.vplink .vp-query{color:#555;margin-bottom:8px}
.vplink .vp-row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.vplink figure{margin:0}
.vplink figcaption{font-size:12px;color:#666;margin-top:2px}
.vplink img{border:1px solid #ccc;max-width:100%;height:auto}
.vplink table.vp-table{border-collapse:collapse;margin:2px 0;table-layout:auto}
.vplink table.vp-table tbody tr{background:transparent}
.vplink table.vp-table th,.vplink table.vp-table td{border:1px solid #ddd;padding:2px 6px;text-align:left;
 vertical-align:top;line-height:1.4}
.vplink table.vp-table th{background:rgba(127,127,127,.12);font-weight:600}
.vplink table.vp-table td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.vplink table.vp-table tr.vp-top td{background:rgba(40,167,69,.14)}
.vplink .vp-note{color:#8a6d3b;background:rgba(255,193,7,.14);padding:3px 6px;border-radius:3px;
 display:inline-block;margin:2px 0}
.vplink .vp-muted{color:#777}
.vplink .vp-chip{display:inline-block;border:1px solid #ccc;border-radius:10px;padding:0 7px;margin:1px 2px}
.vplink .vp-bar{display:inline-block;height:9px;background:#4a90d9;vertical-align:middle;margin-left:6px}
.vplink .vp-desc{display:inline-block;min-width:200px;max-width:340px;color:#555}
.vplink .vp-name{white-space:nowrap}
.vplink .vp-para{max-width:640px}
.vplink code{font-size:12px}
.vplink details{margin-top:6px}
.vplink pre{white-space:pre-wrap;margin:2px 0;font-size:12px}
</style>"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def note(text: str) -> str:
    """A highlighted one-line note (what is missing, or why)."""
    return f'<div class="vp-note">{esc(text)}</div>'


def image_data_uri(image: Image.Image, *, max_width: int | None = None, fmt: str = "JPEG") -> str:
    """A ``data:`` URI of the picture (downscaled to ``max_width``), for self-contained HTML."""
    from PIL import Image as PILImage

    picture = image if image.mode in ("RGB", "L") or fmt == "PNG" else image.convert("RGB")
    if max_width and picture.width > max_width:
        height = max(1, round(picture.height * max_width / picture.width))
        picture = picture.resize((max_width, height), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def img_tag(uri: str, alt: str, caption: str | None = None) -> str:
    """An ``<img>`` (inside a ``<figure>`` when captioned)."""
    tag = f'<img src="{uri}" alt="{esc(alt)}">'
    return f"<figure>{tag}<figcaption>{esc(caption)}</figcaption></figure>" if caption else tag


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = (),
          row_classes: Sequence[str] | None = None, cls: str = "") -> str:
    """An HTML table; ``headers`` are escaped here, ``rows`` cells must already be HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        row_attr = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{row_attr}>{cells}</tr>")
    classes = f"vp-table {cls}".strip()
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def guarded(build: Callable[[], str], what: str) -> str:
    """The section ``build`` draws, or a note naming what failed: showing a result must never raise."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - a broken section is shown as such, the rest still renders
        return note(f"{what} cannot be shown ({type(exc).__name__}: {exc})")


# --------------------------------------------------------------------------------------- the result


def link_result_html(result: Any, *, top: int = TOP_CANDIDATES) -> str:
    """A self-contained HTML view of a :class:`LinkResult` for notebooks and reports."""
    sections = [
        guarded(lambda: _header(result), "The answer"),
        guarded(lambda: _pictures(result), "The picture"),
        guarded(lambda: _evidence(result), "The evidence"),
        guarded(lambda: _model(result), "The model's reasoning"),
        guarded(lambda: _candidates(result, top), "The candidates"),
        guarded(lambda: _timings(result), "The timings"),
    ]
    return STYLE + '<div class="vplink">' + "".join(sections) + "</div>"


def _header(result: Any) -> str:
    answer = result.headline
    query = result.query
    parts = []
    if query.image:
        parts.append(f"picture <code>{esc(query.image)}</code>")
    box = "whole picture" if not query.box else "[" + ", ".join(f"{v:g}" for v in query.box) + "]"
    parts.append(f"box {esc(box)}")
    if query.text:
        parts.append(f"text “{esc(query.text)}”")
    if query.mention:
        parts.append(f"mention “{esc(query.mention)}”")
    qid = f" <code>{esc(query.id)}</code>" if query.id else ""
    return (f"<h3>vplink{qid}: {esc(answer)}</h3>"
            f'<div class="vp-query">{" · ".join(parts)}</div>')


def _pictures(result: Any) -> str:
    query = result.query
    if not query.image:
        return note("No picture: this query is text only.")
    try:
        from vplink.agent.visual_prompt import VisualPrompt

        prompt = VisualPrompt.load(query.image, query.box)
        marked = prompt.marked
        crop = prompt.crop() if query.box else None
    except Exception as exc:  # noqa: BLE001 - a moved or broken file degrades to a note
        return note(f"The picture {query.image} cannot be shown: {exc}")
    shown = _downscale(marked, PICTURE_WIDTH)
    faces = ((result.evidence or {}).get("faces") or {})
    analysed = (result.evidence or {}).get("image_size") or prompt.size
    try:
        found = _draw_faces(shown, faces, shown.width / max(1, analysed[0]))
    except Exception:  # noqa: BLE001 - malformed face records cost the outlines, not the picture
        found = 0
    caption = "The marked picture (red box)"
    if found:
        caption += f"; {found} face{'s' if found > 1 else ''} found, outlined in blue and numbered left to right"
    figures = [img_tag(image_data_uri(shown), "the picture with the box drawn", caption)]
    if crop is not None:
        figures.append(img_tag(image_data_uri(crop, max_width=CROP_WIDTH), "the zoomed region",
                               "The region, zoomed (what the model sees up close)"))
    return f'<div class="vp-row">{"".join(figures)}</div>'


def _downscale(image: Image.Image, width: int) -> Image.Image:
    from PIL import Image as PILImage

    if image.width <= width:
        return image.copy()
    return image.resize((width, max(1, round(image.height * width / image.width))), PILImage.Resampling.LANCZOS)


def _draw_faces(image: Image.Image, faces: dict[str, Any], scale: float) -> int:
    """Outline the detected faces thinly and number them left to right, in place; returns how many."""
    from PIL import ImageDraw, ImageFont

    boxes = [face.get("box") for face in faces.get("faces") or [] if face.get("box")]
    if not boxes:
        return 0
    draw = ImageDraw.Draw(image)
    size = max(11, round(image.width / 40))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        font = ImageFont.load_default()
    marked = faces.get("marked")
    for index, box in enumerate(boxes):
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=FACE_COLOUR, width=max(1, round(image.width / 300)))
        label = str(index + 1)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        w, h = right - left + 6, bottom - top + 4
        # The number sits on the face's top-left corner, inside the picture even for a face at the edge.
        tx, ty = max(0, min(x0, image.width - w)), max(0, min(y0, image.height - h))
        draw.rectangle((tx, ty, tx + w, ty + h), fill=MARKED_FACE_COLOUR if index == marked else FACE_COLOUR)
        draw.text((tx + 3 - left, ty + 2 - top), label, fill=(255, 255, 255) if index == marked else (0, 0, 0),
                  font=font)
    return len(boxes)


def _model(result: Any) -> str:
    parts = ["<h4>The model</h4>"]
    description, judgement = result.description, result.judgement
    if not result.used_model and description is None:
        parts.append(note("No model was used: no model server was connected, so the region was linked on the "
                          "evidence and the text alone. Connect one with open_linker(store=..., llm_url=...)."))
        return "".join(parts)
    parts.append(f'<div class="vp-muted">model <code>{esc(result.used_model or "?")}</code></div>')
    if description is not None:
        names = ", ".join(f"{i}. {esc(n)}" for i, n in enumerate(description.names, 1)) or "none"
        seen = "".join(f"<li>{esc(e)}</li>" for e in description.evidence)
        said = esc(description.rationale) or '<span class="vp-muted">none given</span>'
        rows = [("rationale", f'<div class="vp-para">{said}</div>'),
                ("name guesses", names), ("entity type", esc(description.entity_type)),
                ("confidence", f"{description.confidence:.2f}"),
                ("what it saw", f"<ul style='margin:0;padding-left:18px'>{seen}</ul>" if seen else "nothing listed")]
        parts.append(table(["description", "the model says"], rows, cls="vp-model"))
    else:
        parts.append(note("The model gave no usable description (see the notes below)."))
    if judgement is not None:
        scores = ", ".join(f"{esc(k)}: {v:.2f}" for k, v in sorted(judgement.scores.items(), key=lambda kv: -kv[1]))
        rows = [("choice", f"<code>{esc(judgement.choice)}</code>"),
                ("rationale", f'<div class="vp-para">{esc(judgement.rationale)}</div>'),
                ("scores", scores or "none")]
        parts.append("<h4>Reflection (close call, judged again)</h4>"
                     + table(["judgement", "the model says"], rows, cls="vp-model"))
    return "".join(parts)


def _candidates(result: Any, top: int) -> str:
    ranking = result.ranking[:top]
    head = f"<h4>Top {len(ranking)} of {len(result.ranking)} candidates</h4>"
    if not ranking:
        return head + note("No candidate was retrieved.")
    # Channels present among the shown candidates, the most widely used first.
    counts: dict[str, int] = {}
    for entity in ranking:
        for channel in entity.hits:
            counts[channel] = counts.get(channel, 0) + 1
    channels = sorted(counts, key=lambda c: (-counts[c], c))
    # The retrieval score is worth a column only when a reranker changed the order's scores.
    reranked = any(abs(e.score - e.retrieval_score) > 1e-9 for e in ranking)
    # "query view > entity view", spaced so that the narrow rank columns' headers can wrap.
    headers = (["#", "id", "name", "score"] + (["retrieval score"] if reranked else [])
               + [c.replace(">", " › ") for c in channels] + ["description"])
    rows = []
    for rank, entity in enumerate(ranking, 1):
        ranks = []
        for channel in channels:
            hit = entity.hits.get(channel)
            value = hit.get("rank") if hit else None
            cell = "–" if value is None else f"{value:g}"
            ranks.append(f"<b>{cell}</b>" if value == 1 else cell)
        described = entity.description or ""
        # A short description keeps rows one or two lines high; the whole one is in the tooltip.
        short = described if len(described) <= 80 else described[:79] + "…"
        scores = [f"{entity.score:.4f}"] + ([f"{entity.retrieval_score:.4f}"] if reranked else [])
        rows.append([str(rank), f"<code>{esc(entity.id)}</code>", f'<span class="vp-name">{esc(entity.name)}</span>',
                     *scores, *ranks, f'<span class="vp-desc" title="{esc(described)}">{esc(short)}</span>'])
    numeric = [0, *range(3, 3 + len(scores) + len(channels))]
    classes = ["vp-top" if i == 0 and not result.nil else "" for i in range(len(rows))]
    legend = ('<div class="vp-muted">Channel columns give the candidate\'s rank in each search '
              "(query view › entity view; – = not found by that search); bold = first.</div>")
    return head + table(headers, rows, numeric=numeric, row_classes=classes) + legend


def _evidence(result: Any) -> str:
    evidence = result.evidence
    parts = ["<h4>Evidence found</h4>"]
    if not evidence:
        parts.append(note("No visual evidence (no picture, or the tools were not run)."))
    else:
        parts.append(table(["tool", "finding"], _evidence_rows(evidence)))
    if result.evidence_text:
        parts.append(f"<details><summary>The evidence as the model reads it</summary>"
                     f"<pre>{esc(result.evidence_text)}</pre></details>")
    return "".join(parts)


def _evidence_rows(evidence: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    geometry = evidence.get("geometry")
    if geometry:
        if geometry.get("whole_image"):
            where = "no box: the whole picture"
        else:
            cx, cy = geometry.get("centre", (0, 0))
            where = (f"{geometry.get('vertical')} {geometry.get('horizontal')}, {geometry.get('area_share', 0):.0%} "
                     f"of the picture (centre {cx:.0%} across, {cy:.0%} down)")
        rows.append(["geometry", esc(where)])
    faces = evidence.get("faces")
    if faces is not None:
        rows.append(["faces", _faces_cell(faces)])
    ocr = evidence.get("ocr")
    if ocr is not None:
        lines = ocr.get("lines") or []
        text = "<br>".join(f"“{esc(line.get('text', ''))}” "
                           f"<span class='vp-muted'>({line.get('score', 0):.2f})</span>" for line in lines)
        rows.append(["OCR text", text or '<span class="vp-muted">no text read in the box</span>'])
    labels = evidence.get("labels")
    if labels is not None:
        chips = "".join(f'<span class="vp-chip">{esc(item.get("label"))} {item.get("probability", 0):.2f}</span>'
                        for item in labels.get("labels") or [])
        rows.append(["object labels", (chips or "none")
                     + ' <span class="vp-muted">(ImageNet classes: there is no “person”)</span>'])
    alignment = evidence.get("alignment") or {}
    if alignment.get("spans"):
        listed = ", ".join(f"{i}. {esc(n)} <span class='vp-muted'>({p:.0%})</span>" for i, (n, p) in
                           enumerate(zip(alignment["spans"], alignment.get("probabilities") or []), 1))
        rows.append(["people in the text", listed + f'<br><span class="vp-muted">{esc(alignment.get("reason"))}</span>'])
    runs = evidence.get("runs") or []
    if runs:
        cells = []
        for run in runs:
            state = f"{run.get('seconds', 0):.2f} s" if run.get("ok") else f"failed: {run.get('error')}"
            cells.append(f"{esc(run.get('tool'))} {esc(state)}")
        rows.append(["tool runs", '<span class="vp-muted">' + " · ".join(cells) + "</span>"])
    return rows


def _faces_cell(faces: dict[str, Any]) -> str:
    found = faces.get("faces") or []
    if not found:
        return '<span class="vp-muted">no frontal face found (the detector misses profiles and small faces)</span>'
    marked = faces.get("marked")
    if faces.get("whole_image"):
        summary = f"{len(found)} found; no box, so none is singled out"
    elif marked is None:
        summary = f"{len(found)} found; none lies inside the box"
    else:
        summary = (f"{len(found)} found; the marked person is face {marked + 1}, the {faces.get('position')} "
                   f"(confidence {faces.get('confidence', 0):.2f})")
    rows = [[str(i + 1) + (" ◀ marked" if i == marked else ""), esc(face.get("box")),
             f"{face.get('confidence', 0):.2f}", f"{face.get('overlap', 0):.0%}"] for i, face in enumerate(found)]
    return esc(summary) + table(["# (left to right)", "box (px)", "confidence", "inside the box"], rows,
                                numeric=[2, 3])


def _timings(result: Any) -> str:
    parts = []
    if result.notes:
        parts.append("<h4>Notes</h4><ul>" + "".join(f"<li>{esc(n)}</li>" for n in result.notes) + "</ul>")
    timings = result.timings_ms
    if timings:
        longest = max(timings.values()) or 1.0
        rows = [[esc(stage), f"{ms:,.1f}", f'<span class="vp-bar" style="width:{max(1, round(160 * ms / longest))}px">'
                 "</span>"] for stage, ms in timings.items()]
        rows.append(["<b>total</b>", f"<b>{sum(timings.values()):,.1f}</b>", ""])
        parts.append("<h4>Timings</h4>" + table(["step", "ms", ""], rows, numeric=[1]))
    return "".join(parts)


# --------------------------------------------------------------------------------------- the graph


class MermaidText(str):
    """Mermaid diagram text that notebooks draw: JupyterLab (4.1+) renders the ```mermaid block it shows.

    It is a ``str``, so ``print()`` and string tests work as before. There is deliberately no
    ``_repr_html_``: JupyterLab prefers ``text/html`` over ``text/markdown``, so an HTML fallback would
    hide the drawing; frontends without Mermaid show the text itself. :meth:`html` gives a ``<pre>``
    for pages that want one. Nothing here calls a web service.
    """

    def _repr_markdown_(self) -> str:
        return f"```mermaid\n{self}\n```"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # IPython's plain-text view: the diagram text itself, not a quoted one-line string.
        printer.text(str(self))

    def html(self) -> str:
        """The text in an escaped ``<pre>``, for HTML pages that cannot run Mermaid."""
        return f'<pre class="mermaid">{esc(self)}</pre>'


# --------------------------------------------------------------------------------------- a whole picture

#: Outline and label colour of a named box, and of a box answered unknown.
NAMED_COLOUR = (220, 30, 30)
UNKNOWN_COLOUR = (128, 128, 128)


def draw_named_boxes(image: Image.Image, boxes: Sequence[Sequence[float] | None], labels: Sequence[str | None],
                     width: int) -> Image.Image:
    """A copy of the picture, ``width`` px wide, with each box outlined, numbered from 1 and named (None: unknown)."""
    from PIL import ImageDraw, ImageFont

    from vplink.retrieval.images import original_size

    shown = _downscale(image.convert("RGB"), width)
    scale = shown.width / max(1, original_size(image)[0])  # boxes are in the file's pixels
    draw = ImageDraw.Draw(shown)
    try:
        font = ImageFont.load_default(size=max(11, round(shown.width / 45)))
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        font = ImageFont.load_default()
    for number, (box, label) in enumerate(zip(boxes, labels), start=1):
        x0, y0, x1, y1 = (round(v * scale) for v in (box or (0, 0, *original_size(image))))
        colour = NAMED_COLOUR if label else UNKNOWN_COLOUR
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=max(2, round(shown.width / 250)))
        text = f"{number}. {label or 'unknown'}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left + 6, bottom - top + 4
        # The label sits under the box, or over its bottom edge when the box reaches the picture's foot.
        tx, ty = max(0, min(x0, shown.width - w)), max(0, min(y1, shown.height - h))
        draw.rectangle((tx, ty, tx + w, ty + h), fill=colour)
        draw.text((tx + 3 - left, ty + 2 - top), text, fill=(255, 255, 255), font=font)
    return shown


def picture_result_html(picture: Any) -> str:
    """A self-contained HTML view of a :class:`PictureResult`: every box numbered and named, then a table."""
    people = picture.people()

    def drawn() -> str:
        from vplink.retrieval.images import load_image

        image = draw_named_boxes(load_image(picture.image), [p.box for p in people], [p.name for p in people],
                                 PICTURE_WIDTH)
        return img_tag(image_data_uri(image), "the picture with every box named",
                       f"{len(people)} {picture.boxes_from}, numbered and named (grey: unknown)")

    rows = []
    for number, person in enumerate(people, start=1):
        box = "whole picture" if not person.box else "[" + ", ".join(f"{v:g}" for v in person.box) + "]"
        answer = (f'<span class="vp-name">{esc(person.name)}</span> <code>{esc(person.answer)}</code>'
                  if person.answer else '<span class="vp-muted">unknown</span>')
        others = ", ".join(esc(r["name"] or r["id"]) for r in person.ranking[1:4])
        confidence = "–" if person.confidence is None else f"{person.confidence:.2f}"
        rows.append([str(number), esc(box), answer, confidence, "yes" if person.changed_by_joint else "",
                     others or "–"])
    caption = f'<div class="vp-query">text “{esc(picture.text)}”</div>' if picture.text else ""
    head = f"<h3>vplink: everyone in <code>{esc(picture.image)}</code></h3>{caption}"
    listing = table(["#", "box", "answer", "confidence", "changed by the joint decision", "next"], rows, numeric=[0])
    return (STYLE + '<div class="vplink">' + head + guarded(drawn, "The picture")
            + (listing if rows else note("No box: no face was found.")) + "</div>")
