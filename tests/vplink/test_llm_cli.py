"""Every command that talks to the model fails fast, in one line, when the server is wrong or silent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.stub_servers import html_server, silent_server
from vplink.core.jsonl import write_jsonl

# A hang is a failure: each command must be done long before this (the old client waited 300 s or forever).
HANG_S = 120


def _vplink(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-c", "from vplink.cli import main; main()", *args],
                              capture_output=True, text=True, timeout=HANG_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`vplink {' '.join(args)}` still waits after {HANG_S} s")


def _one_line_error(done: subprocess.CompletedProcess, *expected: str) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def store(small_store) -> str:
    return str(small_store.location)


@pytest.fixture(scope="module")
def dataset(dev_slice, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "two.jsonl"
    write_jsonl(path, [{k: row[k] for k in ("id", "text", "mention", "answer")} for row in dev_slice[:2]])
    return str(path)


def test_link_with_a_silent_server_stops_at_the_timeout(store) -> None:
    with silent_server() as url:
        done = _vplink("link", "x.jpg", "--store", store, "--llm-url", url, "--llm-timeout", "1")
    _one_line_error(done, url, "did not answer within 1 s", "Fix:")
    assert "asking the model server at" in done.stderr  # said what it waits for before waiting


def test_eval_agent_with_a_silent_server_stops_at_the_timeout(store, dataset, tmp_path) -> None:
    with silent_server() as url:
        done = _vplink("eval", dataset, "--store", store, "--pipeline", "agent", "--llm-url", url,
                       "--llm-timeout", "1", "--out", str(tmp_path / "run"))
    _one_line_error(done, url, "did not answer within 1 s")


def test_distill_annotate_with_a_silent_server_stops_at_the_timeout(store, dataset, tmp_path) -> None:
    with silent_server() as url:
        done = _vplink("distill", "annotate", dataset, "--store", store, "--llm-url", url, "--llm-timeout", "1",
                       "--out", str(tmp_path / "r.jsonl"))
    _one_line_error(done, url, "did not answer within 1 s")


def test_link_refuses_a_url_that_is_not_one(store) -> None:
    _one_line_error(_vplink("link", "x.jpg", "--store", store, "--llm-url", "notaurl"),
                    "'notaurl' is not an http(s) URL", "Fix: pass --llm-url like http://")


@pytest.mark.parametrize("status", [200, 404])
def test_link_names_a_web_page_in_one_line(store, status: int) -> None:
    with html_server(status) as url:
        done = _vplink("link", "x.jpg", "--store", store, "--llm-url", url)
    line = _one_line_error(done, url, "HTML page", "Fix:")
    assert "<" not in line and "filler paragraph" not in done.stderr
