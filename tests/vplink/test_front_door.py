"""The front door: the names users import and the `vplink` command's groups."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

import vplink
from vplink.cli import app


def test_public_names_resolve_lazily() -> None:
    assert vplink.Linker.__name__ == "Linker"
    assert vplink.load_run.__name__ == "load_run"
    assert issubclass(vplink.VplinkError, Exception)


def test_cli_groups() -> None:
    out = CliRunner().invoke(app, ["--help"])
    assert out.exit_code == 0
    for group in ("kb", "link", "llm", "eval", "distill"):
        assert group in out.stdout


def test_vplink_error_prints_the_fix_not_a_traceback(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", "from vplink.cli import main; main()", "kb", "search",
                           str(tmp_path / "absent"), "query"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Fix: build one with `vplink kb index" in done.stderr
    assert "Traceback" not in done.stderr


def test_kb_index_reports_skipped_lines(tmp_path) -> None:
    kb = tmp_path / "kb.jsonl"
    kb.write_text('{"id": "Q1", "name": "Ada Lovelace", "description": "mathematician"}\n{"id": "Q2"}\n',
                  encoding="utf-8")
    out = CliRunner().invoke(app, ["kb", "index", str(kb), "--store", str(tmp_path / "s"), "--skip-invalid"])
    assert out.exit_code == 0, out.output
    assert "line 2" in out.stdout and "field 'name'" in out.stdout
    assert "1 entities indexed" in out.stdout
    search = CliRunner().invoke(app, ["kb", "search", str(tmp_path / "s"), "the first programmer",
                                      "--mention", "Lovelace", "--json"])
    assert search.exit_code == 0, search.output
    import json

    assert json.loads(search.stdout)[0]["id"] == "Q1"


def test_packages_install_under_the_vplink_namespace_only(tmp_path):
    """From another directory, `vplink.agent` imports and no top-level `agent`/`eval`/... does."""
    import subprocess
    import sys

    script = ("import importlib, importlib.util as u, sys\n"
              "names = ['agent', 'prompts', 'retrieval', 'distill', 'eval']\n"
              "print(sorted(n for n in names if u.find_spec(n) is not None))\n"
              "print(sorted(n for n in names if importlib.import_module('vplink.' + n)))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    top_level, namespaced = out.stdout.splitlines()
    assert top_level == "[]"
    assert namespaced == str(sorted(['agent', 'prompts', 'retrieval', 'distill', 'eval']))


def test_kb_index_again_keeps_the_backend_the_store_was_built_with(tmp_path) -> None:
    """A store built with another backend than today's default takes new entities without --text-backend."""
    from vplink.retrieval.store import KBStore

    kb = tmp_path / "kb.jsonl"
    kb.write_text('{"id": "Q1", "name": "Ada Lovelace", "description": "mathematician"}\n', encoding="utf-8")
    store = str(tmp_path / "s")
    first = CliRunner().invoke(app, ["kb", "index", str(kb), "--store", store, "--text-backend", "onnx",
                                     "--image-encoder", "none"])
    assert first.exit_code == 0, first.output
    with kb.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "Q2", "name": "Alan Turing", "description": "computer scientist"}\n')
    again = CliRunner().invoke(app, ["kb", "index", str(kb), "--store", store, "--image-encoder", "none"])
    assert again.exit_code == 0, again.output
    assert "name: 1 added" in again.stdout
    assert KBStore(store).backend_of("name") == "onnx"


def test_kb_index_interrupted_says_so_and_resumes(tmp_path, monkeypatch) -> None:
    """Ctrl-C in the middle of `kb index` (here: on the second encode, the second text view) names the store and
    the way to resume; running the same command again embeds only what was missing."""
    from tests.text_models import InterruptedEncoder
    from vplink.retrieval import text_encoder

    kb = tmp_path / "kb.jsonl"
    kb.write_text('{"id": "Q1", "name": "Ada Lovelace", "description": "mathematician"}\n'
                  '{"id": "Q2", "name": "Alan Turing", "description": "computer scientist"}\n', encoding="utf-8")
    command = ["kb", "index", str(kb), "--store", str(tmp_path / "s"), "--image-encoder", "none"]
    real = text_encoder.TextEncoder
    with monkeypatch.context() as patch:
        patch.setattr(text_encoder, "TextEncoder", lambda *a, **kw: InterruptedEncoder(real(*a, **kw), at_call=2))
        stopped = CliRunner().invoke(app, command)
    assert stopped.exit_code == 130, stopped.output
    assert "interrupted" in stopped.stderr and "Run the same command again to resume" in stopped.stderr
    assert "Traceback" not in stopped.output
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "2 unchanged" in again.stdout and "2 added" in again.stdout  # one view kept, the other embedded now
