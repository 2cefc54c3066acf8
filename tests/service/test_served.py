"""The real `vplink serve` command, over HTTP on loopback: two boxes on one photo, two people."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

CAPTION = "Barack Obama and Joe Biden"


@pytest.mark.parametrize(("box", "person"), [("0,0,250,301", "Q76"), ("256,0,512,301", "Q6279")])
def test_vplink_serve_links_each_box(served: str, people_dir: Path, box: str, person: str) -> None:
    photo = people_dir / "images" / "two_people.jpg"
    answer = httpx.post(f"{served}/link", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
                        data={"box": box, "text": CAPTION}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert person in [entity["id"] for entity in answer.json()["ranking"][:5]]
    assert answer.json()["query"]["box"] == [float(v) for v in box.split(",")]


def test_vplink_serve_without_a_store_says_the_fix(tmp_path: Path) -> None:
    import subprocess

    from vplink.service.server import vplink_command

    done = subprocess.run([*vplink_command(), "serve", "--store", str(tmp_path / "absent"), "--port", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "no store at" in done.stderr and "Fix: build one with `vplink kb index" in done.stderr
    assert "Traceback" not in done.stderr
