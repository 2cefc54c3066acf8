"""Reliability probes of the commands that talk to the model and print data (hardening items 8, 9, 10).

Each probe runs the real `vplink` command in a subprocess against a real store, with a stand-in for a
misbehaving remote model server where one is needed, and records what a user would see. Run them with

    python -m pytest tests/reliability/test_probes_llm_cli.py -m slow -s

A probe passes when the command ends within its bound, exits with a one-line `error:` (or succeeds),
prints no traceback, and shows the data as it is. `-s` prints one summary line per probe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.stub_servers import html_server, silent_server
from vplink.core.jsonl import write_jsonl

pytestmark = pytest.mark.slow

HANG_S = 150  # the old client waited 300 s (link) or forever (eval --pipeline agent)


def _vplink(*args: str, bound_s: float = HANG_S) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    try:
        # a wide terminal, so that tables do not fold the cells the probes read
        done = subprocess.run([sys.executable, "-c", "from vplink.cli import main; main()", *args],
                              capture_output=True, text=True, timeout=bound_s, env={**os.environ, "COLUMNS": "400"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"`vplink {' '.join(args)}` still runs after {bound_s:g} s")
    seconds = time.perf_counter() - started
    print(f"\nprobe `vplink {' '.join(args)[:90]}`: exit {done.returncode} in {seconds:.1f} s; "
          f"{(done.stderr.strip().splitlines() or [''])[-1][:160]}")
    return done, seconds


def _clean_error(done: subprocess.CompletedProcess, *expected: str) -> str:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert all(text in errors[0] for text in expected), errors[0]
    assert len(errors[0]) < 600 and "<" not in errors[0], errors[0]
    return errors[0]


@contextmanager
def models_only_server() -> Iterator[str]:
    """Lists a model at once, then never answers a chat request: a server overloaded mid-run."""
    hold = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [{"id": "stuck", "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            hold.wait(600)  # never answers while the probe runs

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        hold.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def store(small_store) -> str:
    return str(small_store.location)


@pytest.fixture(scope="module")
def dataset(dev_slice, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("probe-data") / "three.jsonl"
    write_jsonl(path, [{k: row[k] for k in ("id", "text", "mention", "answer")} for row in dev_slice[:3]])
    return str(path)


# ---------------------------------------------------------------- 8: a server that accepts and never answers

@pytest.mark.parametrize("command", ["link", "eval", "annotate"])
def test_probe_silent_server_without_llm_timeout(command, store, dataset, tmp_path) -> None:
    with silent_server() as url:
        args = {"link": ["link", "x.jpg", "--store", store, "--llm-url", url],
                "eval": ["eval", dataset, "--store", store, "--pipeline", "agent", "--llm-url", url,
                         "--out", str(tmp_path / "run")],
                "annotate": ["distill", "annotate", dataset, "--store", store, "--llm-url", url,
                             "--out", str(tmp_path / "r.jsonl")]}[command]
        done, seconds = _vplink(*args)
    _clean_error(done, url, "did not answer within")
    assert seconds < 60  # the health check's few seconds plus start-up, not the 300 s request timeout


def test_probe_server_that_stops_answering_mid_run(store, shared_data) -> None:
    photo = str(shared_data / "people" / "images" / "obama.jpg")
    with models_only_server() as url:
        done, _ = _vplink("link", photo, "--store", store, "--text", "Joe Biden in Delaware", "--llm-url", url,
                          "--llm-timeout", "2", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    # the model's step fails after its timeout and is noted; linking goes on with text and evidence
    assert any("did not answer within 2 s" in note for note in result["notes"]), result["notes"]
    assert result["ranking"]


# ---------------------------------------------------------------- 9: not a URL, a web page, a 404 page

@pytest.mark.parametrize("command", ["link", "eval", "annotate"])
def test_probe_not_a_url(command, store, dataset, tmp_path) -> None:
    args = {"link": ["link", "x.jpg", "--store", store, "--llm-url", "notaurl"],
            "eval": ["eval", dataset, "--store", store, "--pipeline", "agent", "--llm-url", "notaurl",
                     "--out", str(tmp_path / "run")],
            "annotate": ["distill", "annotate", dataset, "--store", store, "--llm-url", "notaurl",
                         "--out", str(tmp_path / "r.jsonl")]}[command]
    _clean_error(_vplink(*args)[0], "'notaurl' is not an http(s) URL", "Fix:")


@pytest.mark.parametrize("status", [200, 404, 500])
def test_probe_web_page_instead_of_the_api(status, store, dataset, tmp_path) -> None:
    with html_server(status) as url:
        link, _ = _vplink("link", "x.jpg", "--store", store, "--llm-url", url)
        run, _ = _vplink("eval", dataset, "--store", store, "--pipeline", "agent", "--llm-url", url,
                         "--out", str(tmp_path / "run"))
    for done in (link, run):
        _clean_error(done, url, "HTML page")
        assert "filler paragraph" not in done.stderr


# ---------------------------------------------------------------- 10: data that looks like markup

EVIL = "[bold red]Evil[/bold red] [/x] :smile:"


def test_probe_markup_in_kb_names_and_queries(tmp_path, shared_data) -> None:
    kb = tmp_path / "kb.jsonl"
    write_jsonl(kb, [{"id": "Q[1]", "name": EVIL, "description": "[/desc] a [link=file:///etc]trap[/link]"},
                     {"id": "Q2", "name": "Ada Lovelace", "description": "mathematician"}])
    index, _ = _vplink("kb", "index", str(kb), "--store", str(tmp_path / "s"), "--image-encoder", "none")
    assert index.returncode == 0 and "Traceback" not in index.stderr, index.stderr[-2000:]
    search, _ = _vplink("kb", "search", str(tmp_path / "s"), "[/x] Evil [bold red]", "--mention", "[/x]")
    assert search.returncode == 0, search.stderr[-2000:]
    assert EVIL in search.stdout and "[/desc]" in search.stdout and "\x1b[" not in search.stdout
    photo = shared_data / "people" / "images" / "two_people.jpg"
    link, _ = _vplink("link", str(photo), "--store", str(tmp_path / "s"), "--box", "256,0,512,301",
                      "--text", "[/x] Evil [bold red]", "--mention", "[/y]")
    assert link.returncode == 0, link.stderr[-2000:]
    assert EVIL in link.stdout and "\x1b[" not in link.stdout
