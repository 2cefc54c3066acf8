"""The HTTP API on a real store and real photos: linking, streaming, errors, limits, concurrency, the page."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.service.conftest import TEST_LIMIT
from vplink.cli import app as cli_app
from vplink.core.jsonl import read_jsonl
from vplink.service import create_app

CAPTION = "Barack Obama and Joe Biden"
LEFT, RIGHT = "0,0,250,301", "256,0,512,301"  # Obama, Biden (../shared/data/people/photos.jsonl)


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    with TestClient(app) as test_client:
        yield test_client


def post_photo(client: TestClient, photo: Path, url: str = "/link", **fields: str) -> httpx.Response:
    with photo.open("rb") as handle:
        return client.post(url, files={"image": (photo.name, handle, "image/jpeg")}, data=fields)


def sse_events(text: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a text/event-stream body."""
    events = []
    for frame in text.strip().split("\n\n"):
        name = re.search(r"^event: (.*)$", frame, re.M).group(1)
        data = "\n".join(line[6:] for line in frame.splitlines() if line.startswith("data: "))
        events.append((name, json.loads(data)))
    return events


def test_upload_with_two_boxes_finds_each_person(client: TestClient, people_dir: Path) -> None:
    photo = people_dir / "images" / "two_people.jpg"
    leftovers = set(Path(tempfile.gettempdir()).glob("vplink-upload-*"))
    for box, person in ((LEFT, "Q76"), (RIGHT, "Q6279")):
        answer = post_photo(client, photo, box=box, text=CAPTION)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["answer"] == person  # the box decides which of the caption's two people it is
        assert body["query"]["box"] == [float(v) for v in box.split(",")]
        assert body["query"]["image"] == "two_people.jpg"  # the client's name, never the server's temp file
        assert body["query"]["text"] == CAPTION
        assert {"id", "name", "score", "description", "hits"} <= set(body["ranking"][0])
        assert isinstance(body["nil"], bool) and "rationale" in body and body["answer"] == body["ranking"][0]["id"]
        # the calibrated confidence, and the one-line answer the page shows, travel at the top level
        assert 0 < body["confidence"] < 1 and body["headline"].startswith(body["ranking"][0]["name"])
        assert f"confidence {body['confidence']:.2f}" in body["headline"]
        assert len(body["evidence"]["faces"]["faces"]) >= 2  # both faces are found on this photo
        assert {"prepare", "retrieve", "rerank", "decide"} <= set(body["timings_ms"])
    # Uploads are removed after; a subset, not equal: other runs sharing the temp folder remove their own meanwhile.
    assert set(Path(tempfile.gettempdir()).glob("vplink-upload-*")) <= leftovers


def test_path_under_the_image_root(client: TestClient) -> None:
    answer = client.post("/link", data={"path": "two_people.jpg", "box": RIGHT, "text": CAPTION})
    assert answer.status_code == 200, answer.text
    assert answer.json()["answer"] == "Q6279"
    assert answer.json()["query"]["image"] == "two_people.jpg"
    listing = client.get("/pictures").json()
    assert listing["image_root"] and "two_people.jpg" in listing["pictures"]
    assert client.get("/pictures/two_people.jpg").content == (Path(client.app.state.service.pictures.root)
                                                              / "two_people.jpg").read_bytes()


@pytest.mark.parametrize("path", ["../photos.jsonl", "/etc/passwd", "sub/../../photos.jsonl"])
def test_paths_outside_the_image_root_are_refused(client: TestClient, path: str) -> None:
    answer = client.post("/link", data={"path": path, "text": CAPTION})
    assert answer.status_code == 403
    assert "outside the image root" in answer.json()["detail"] and "Fix:" in answer.json()["detail"]
    assert client.get(f"/pictures/{path}").status_code in (403, 404)


def test_absent_picture_is_404(client: TestClient) -> None:
    answer = client.post("/link", data={"path": "nobody.jpg", "text": CAPTION})
    assert answer.status_code == 404 and "no such file" in answer.json()["detail"]


def cli_error(photo: Path, store: str, box: str) -> str:
    """The message `vplink link` stops with for this box."""
    out = CliRunner().invoke(cli_app, ["link", str(photo), "--store", store, "--box", box, "--text", CAPTION])
    assert out.exception is not None
    return str(out.exception)


@pytest.mark.parametrize("box", ["300,10,200,100", "5000,5000,6000,6000", "1,2,3", "a,b,c,d"])
def test_bad_box_gets_the_cli_message(client: TestClient, people_dir: Path, people_store: str, box: str) -> None:
    photo = people_dir / "images" / "two_people.jpg"
    answer = post_photo(client, photo, box=box, text=CAPTION)
    assert answer.status_code == 422
    assert answer.json() == {"detail": cli_error(photo, people_store, box), "error": "BoxError"}
    streamed = post_photo(client, photo, url="/link/stream", box=box, text=CAPTION)
    assert streamed.status_code == 422 and streamed.json()["error"] == "BoxError"  # refused before streaming


def test_not_a_picture_is_named_as_uploaded(client: TestClient) -> None:
    answer = client.post("/link", files={"image": ("notes.jpg", b"this is not a picture", "image/jpeg")},
                         data={"text": CAPTION})
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "ImageLoadError" and "'notes.jpg'" in body["detail"] and "Fix:" in body["detail"]
    assert "vplink-upload-" not in body["detail"]


def test_missing_input_and_double_input_are_refused(client: TestClient, people_dir: Path) -> None:
    assert client.post("/link", data={"box": LEFT}).status_code == 422
    photo = people_dir / "images" / "obama.jpg"
    with photo.open("rb") as handle:
        both = client.post("/link", files={"image": (photo.name, handle)}, data={"path": "obama.jpg"})
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert both.json()["error"] == "RequestError" and "Fix:" in both.json()["detail"]


def test_request_over_the_limit_is_413(client: TestClient) -> None:
    big = b"\xff" * (TEST_LIMIT + 1)
    declared = client.post("/link", files={"image": ("big.jpg", big, "image/jpeg")}, data={"text": CAPTION})
    assert declared.status_code == 413 and f"{TEST_LIMIT:,}" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit must hold while the body is read
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
        for _ in range(TEST_LIMIT // 65536 + 2):
            yield b"x" * 65536

    streamed = client.post("/link", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413 and streamed.json()["error"] == "RequestTooLarge"
    assert client.post("/link", data={"text": CAPTION}).status_code == 200  # small requests still pass


def test_entity_by_id(client: TestClient) -> None:
    obama = client.get("/entities/Q76")
    assert obama.status_code == 200 and obama.json()["name"] == "Barack Obama"
    absent = client.get("/entities/Q0-not-there")
    assert absent.status_code == 404 and "Q0-not-there" in absent.json()["detail"]


def test_health_reports_the_store_and_no_model_server(client: TestClient, people_store: str) -> None:
    health = client.get("/health").json()
    kb_rows = len(read_jsonl(Path(people_store).parent / "kb.jsonl"))
    assert health["status"] == "ok"
    assert health["store"]["ok"] and health["store"]["entities"] == kb_rows
    assert "minilm" in health["encoders"]["text"].lower() and health["encoders"]["image"] is None
    assert health["model_server"] == {"configured": False, "url": None, "reachable": None, "model": None}
    assert health["warm"] and health["warm_up_s"] > 0


def test_health_says_warming_until_every_model_has_run(service_settings, service_linker) -> None:
    """Before the app's start-up (which warms every model) /health answers 503 "warming"; after it, 200."""
    app = create_app(service_settings, linker=service_linker)
    cold = TestClient(app).get("/health")  # no `with`: the start-up (and its warm-up) has not run
    assert cold.status_code == 503 and cold.json()["status"] == "warming" and not cold.json()["warm"]
    with TestClient(app) as client:
        warm = client.get("/health")
    assert warm.status_code == 200 and warm.json()["warm"] and warm.json()["status"] == "ok"


def test_openapi_schema_lists_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/link", "/link/stream", "/entities/{entity_id}", "/health"} <= set(schema["paths"])
    form = schema["paths"]["/link"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form
    assert "LinkResponse" in schema["components"]["schemas"]


def test_stream_sends_each_step_then_the_result(client: TestClient, people_dir: Path) -> None:
    photo = people_dir / "images" / "two_people.jpg"
    streamed = post_photo(client, photo, url="/link/stream", box=RIGHT, text=CAPTION)
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed.text)
    steps = [data["node"] for name, data in events if name == "step"]
    assert steps == ["prepare", "retrieve", "rerank", "decide"]
    assert [name for name, _ in events][-1] == "result"
    prepare = events[0][1]["update"]
    assert len(prepare["evidence"]["faces"]["faces"]) >= 2  # the faces arrive before the model is asked
    result = events[-1][1]
    plain = post_photo(client, photo, box=RIGHT, text=CAPTION).json()
    assert [e["id"] for e in result["ranking"]] == [e["id"] for e in plain["ranking"]]
    assert result["query"]["image"] == "two_people.jpg"


def test_concurrent_requests_keep_their_own_answers(app, people_dir: Path, shared_data: Path) -> None:
    """Eight requests at once (photos with different boxes, and text-only dev mentions) each get the answer
    they get alone."""
    photo = (people_dir / "images" / "two_people.jpg").read_bytes()
    dev = read_jsonl(shared_data / "wikimel" / "dev.jsonl")[:6]
    requests = [{"files": {"image": ("two_people.jpg", photo, "image/jpeg")}, "data": {"box": box, "text": CAPTION}}
                for box in (LEFT, RIGHT)]
    requests += [{"data": {"text": row["text"], "mention": row["mention"]}} for row in dev]

    async def run(together: bool) -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vplink", timeout=300) as http:
            async def one(request: dict) -> dict:
                answer = await http.post("/link", **request)
                assert answer.status_code == 200, answer.text
                return answer.json()
            if together:
                return list(await asyncio.gather(*(one(r) for r in requests)))
            return [await one(r) for r in requests]

    alone, together = asyncio.run(run(False)), asyncio.run(run(True))
    for request, a, t in zip(requests, alone, together):
        assert t["query"]["text"] == request["data"]["text"] and t["query"]["box"] == a["query"]["box"]
        assert [e["id"] for e in t["ranking"]] == [e["id"] for e in a["ranking"]]
    assert together[0]["query"]["box"] != together[1]["query"]["box"]


def test_link_all_names_everyone_once(client: TestClient, people_dir: Path) -> None:
    """No box: every face found, the caption's two people assigned one to one, each with its whole result."""
    answer = post_photo(client, people_dir / "images" / "two_people.jpg", url="/link/all", text=CAPTION)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["boxes_from"] == "faces" and body["image"] == "two_people.jpg"
    people = sorted(body["people"], key=lambda p: p["box"][0])
    assert [p["answer"] for p in people] == ["Q76", "Q6279"]
    assert all(set(p) >= {"box", "answer", "confidence", "ranking", "changed_by_joint"} for p in people)
    for person, result in zip(body["people"], body["results"]):
        assert result["answer"] == person["answer"] and result["query"]["box"] == person["box"]
        assert result["joint"]["boxes"] == 2 and result["evidence"]["faces"]["marked"] is not None
    given = client.post("/link/all", data={"path": "two_people.jpg", "boxes": f"{RIGHT}; {LEFT}", "text": CAPTION})
    assert given.status_code == 200, given.text
    assert given.json()["boxes_from"] == "boxes"
    assert [p["answer"] for p in given.json()["people"]] == ["Q6279", "Q76"]


def test_link_all_refuses_a_bad_box_or_no_picture(client: TestClient) -> None:
    bad = client.post("/link/all", data={"path": "two_people.jpg", "boxes": "0,0,250,301; 300,10,200,100"})
    assert bad.status_code == 422 and bad.json()["error"] == "BoxError" and "Fix:" in bad.json()["detail"]
    none = client.post("/link/all", data={"text": CAPTION})
    assert none.status_code == 422 and "upload `image` or name `path`" in none.json()["detail"]


def test_page_is_self_contained_and_inserts_data_as_text(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="canvas"' in page.text and 'type="file"' in page.text
    script = client.get("/static/app.js")
    style = client.get("/static/style.css")
    assert script.status_code == 200 and style.status_code == 200
    for text in (page.text, script.text, style.text):
        assert not re.search(r"https?://", text)  # nothing is fetched from elsewhere: it works offline
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert "link/stream" in script.text and "mousedown" in script.text
    assert 'id="everyone"' in page.text and "link/all" in script.text  # the "find everyone" button


def test_cli_serve_help() -> None:
    out = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert out.exit_code == 0
    for option in ("--store", "--prefix", "--llm-url", "--host", "--port", "--image-root", "--max-request-mb",
                   "--scorer"):
        assert option in out.stdout
