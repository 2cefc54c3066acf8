"""The contact sheet of a `vplink tag` run: a thumbnail of every picture with its boxes numbered and named.

One self-contained HTML file (thumbnails inlined, nothing fetched from elsewhere); every piece of data is
escaped. A picture that cannot be drawn (moved, broken) shows its error in place of the thumbnail.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vplink.agent.display import draw_named_boxes, esc, guarded, image_data_uri, note
from vplink.agent.state import PictureLine
from vplink.core.jsonl import atomic_write

#: Thumbnail width (px).
THUMBNAIL_WIDTH = 320

STYLE = """<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:13px;margin:16px}
.sheet{display:flex;flex-wrap:wrap;gap:14px}
.card{width:330px;border:1px solid #ddd;border-radius:4px;padding:5px}
.card img{width:100%;height:auto;display:block}
.card .id{font-weight:600;word-break:break-all}
.card .text{color:#555;margin:2px 0}
.card ol{margin:4px 0;padding-left:20px}
.unknown{color:#888}
.error{color:#a00}
.changed{color:#8a6d3b}
</style>"""


def write_contact_sheet(path: Path, lines: Sequence[PictureLine]) -> None:
    """Write the contact sheet of ``lines`` atomically."""
    people = sum(len(line.people) for line in lines)
    skipped = sum(1 for line in lines if line.error)
    head = (f"<h1>vplink tag: {len(lines)} pictures, {people} people</h1>"
            f"<p>{skipped} picture(s) skipped. Grey boxes are unknown (not in the KB, or not named); "
            "<span class=changed>*</span> marks an answer the joint decision changed.</p>")
    cards = "".join(_card(line) for line in lines)
    with atomic_write(path) as handle:
        handle.write("<!doctype html><html><head><meta charset=utf-8><title>vplink tag</title>" + STYLE
                     + f"</head><body>{head}<div class=sheet>{cards}</div></body></html>\n")


def _card(line: PictureLine) -> str:
    """One picture: its thumbnail with the boxes drawn, its caption, and the list of people."""
    parts = [f'<div class=card><div class=id>{esc(line.id)}</div>']
    if line.error:
        return "".join(parts) + f'<div class=error>skipped: {esc(line.error)}</div></div>'
    parts.append(guarded(lambda: _thumbnail(line), "The picture"))
    if line.text:
        parts.append(f"<div class=text>{esc(line.text)}</div>")
    if not line.people:
        parts.append(note("no face found"))
    items = []
    for person in line.people:
        if person.answer is None:
            items.append("<li class=unknown>unknown</li>")
            continue
        confidence = "" if person.confidence is None else f" ({person.confidence:.2f})"
        changed = " <span class=changed>*</span>" if person.changed_by_joint else ""
        items.append(f"<li>{esc(person.name)} <code>{esc(person.answer)}</code>{esc(confidence)}{changed}</li>")
    parts.append(f"<ol>{''.join(items)}</ol></div>")
    return "".join(parts)


def _thumbnail(line: PictureLine) -> str:
    from vplink.retrieval.images import load_image

    drawn = draw_named_boxes(load_image(line.image), [p.box for p in line.people], [p.name for p in line.people],
                             THUMBNAIL_WIDTH)
    return f'<img src="{image_data_uri(drawn)}" alt="{esc(line.id)}">'
