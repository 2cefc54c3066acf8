"""Reliability probes for the store and eval items of the hardening issue, run through the `vplink` command.

Each probe is what a demanding user would try, on real WikiMEL slices (a 3,000-entity KB holding the gold of
the first 300 dev mentions). Slow (they build a real store and start the CLI many times):

    python -m pytest -m slow tests/reliability/test_probes_store_eval.py -v
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA
from tests.text_models import InterruptedEncoder, text_model_copy

pytestmark = pytest.mark.slow

WIKIMEL = SHARED_DATA / "wikimel"
VPLINK = [sys.executable, "-c", "from vplink.cli import main; main()"]


def vplink(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run the `vplink` command as a user does (its real entry point, in a fresh process)."""
    return subprocess.run([*VPLINK, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def files(folder: Path) -> dict[str, tuple[int, int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def predictions(run: Path) -> dict[str, list]:
    rows = (json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines())
    return {row["id"]: [(r["id"], r["score"]) for r in row["ranking"]] for row in rows}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The KB slice, the 300 dev mentions, and a store built from them with `vplink kb index`."""
    folder = tmp_path_factory.mktemp("probes")
    dev = [json.loads(line) for line in (WIKIMEL / "dev.jsonl").read_text().splitlines()[:300]]
    gold = {row["answer"] for row in dev}
    kb_rows = [json.loads(line) for line in (WIKIMEL / "kb.jsonl").read_text().splitlines()]
    rows = [e for e in kb_rows if e["id"] in gold] + [e for e in kb_rows if e["id"] not in gold][:3000 - len(gold)]
    (folder / "kb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    done = vplink("kb", "index", folder / "kb.jsonl", "--store", folder / "store", "--image-encoder", "none")
    assert done.returncode == 0, done.stderr
    return {"dir": folder, "kb": folder / "kb.jsonl", "dev": folder / "dev.jsonl", "store": folder / "store"}


def test_probe_1_resume_with_another_store_or_k_is_refused(data, tmp_path):
    small = tmp_path / "small-kb.jsonl"
    small.write_text("".join(data["kb"].read_text().splitlines(keepends=True)[:50]))
    assert vplink("kb", "index", small, "--store", tmp_path / "small", "--image-encoder", "none").returncode == 0
    out = tmp_path / "run"
    first = vplink("eval", data["dev"], "--store", data["store"], "--pipeline", "retrieve", "--limit", "40", "--out", out)
    assert first.returncode == 0, first.stderr
    for extra, what in ((["--store", tmp_path / "small"], "settings.store"), (["--store", data["store"], "-k", "5"],
                                                                            "settings.k")):
        again = vplink("eval", data["dev"], "--pipeline", "retrieve", "--limit", "40", "--out", out, *extra)
        assert again.returncode == 2 and what in again.stderr and "--restart" in again.stderr, again.stderr
    fresh = vplink("eval", data["dev"], "--store", tmp_path / "small", "--pipeline", "retrieve", "--limit", "40",
                   "--out", out, "--restart")
    assert fresh.returncode == 0
    assert json.loads((out / "metrics.json").read_text())["hits"]["1"] < 0.5  # the small KB's own (low) number


def test_probe_2_a_store_with_several_kbs_needs_a_prefix(data, tmp_path):
    lines = data["kb"].read_text().splitlines(keepends=True)
    for prefix, part in (("people", lines[:20]), ("others", lines[20:40])):
        (tmp_path / f"{prefix}.jsonl").write_text("".join(part))
        assert vplink("kb", "index", tmp_path / f"{prefix}.jsonl", "--store", tmp_path / "s", "--prefix", prefix,
                      "--image-encoder", "none").returncode == 0
    refused = vplink("kb", "search", tmp_path / "s", "a politician")
    assert refused.returncode == 2 and "others, people" in refused.stderr and "--prefix" in refused.stderr
    refused = vplink("eval", data["dev"], "--store", tmp_path / "s", "--pipeline", "retrieve", "--limit", "3",
                     "--out", tmp_path / "run")
    assert refused.returncode == 2 and "--prefix" in refused.stderr
    ok = vplink("eval", data["dev"], "--store", tmp_path / "s", "--prefix", "people", "--pipeline", "retrieve",
                "--limit", "3", "--out", tmp_path / "run")
    assert ok.returncode == 0, ok.stderr
    image = WIKIMEL / "images" / "735.jpg"
    refused = vplink("link", image, "--store", tmp_path / "s", "--text", "a politician")
    assert refused.returncode == 2 and "others, people" in refused.stderr
    linked = vplink("link", image, "--store", tmp_path / "s", "--prefix", "others", "--text", "a politician", "--json")
    assert linked.returncode == 0, linked.stderr
    others = {json.loads(line)["id"] for line in (tmp_path / "others.jsonl").read_text().splitlines()}
    assert {r["id"] for r in json.loads(linked.stdout)["ranking"]} <= others


def test_probe_3_a_changed_model_under_the_same_name_is_refused(data, tmp_path):
    model = text_model_copy(tmp_path, perturb=True)
    extend = vplink("kb", "index", data["kb"], "--store", data["store"], "--text-model", model,
                    "--image-encoder", "none")
    assert extend.returncode == 2 and "other weight files" in extend.stderr, extend.stderr
    search = vplink("kb", "search", data["store"], "a politician", "--text-model", model)
    assert search.returncode == 2 and "other weight files" in search.stderr


def test_probe_4_an_interrupted_index_is_reported_on_open(data, tmp_path):
    from vplink.retrieval.kb import load_kb
    from vplink.retrieval.store import KBStore
    from vplink.retrieval.text_encoder import TextEncoder

    encoder = TextEncoder()
    entities = load_kb(data["kb"]).entities[:40]
    KBStore(tmp_path / "s").index(entities, encoder, progress=False)
    with pytest.raises(KeyboardInterrupt):
        # Ctrl-C while the new entities are embedded
        KBStore(tmp_path / "s").index([*entities, *load_kb(data["kb"]).entities[40:60]], InterruptedEncoder(encoder),
                                      progress=False)
    search = vplink("kb", "search", tmp_path / "s", "a politician")
    assert search.returncode == 0
    assert "warning:" in search.stderr and "incomplete" in search.stderr and "vplink kb index" in search.stderr


def test_probe_5_gold_outside_the_kb(data, tmp_path):
    dev = data["dev"].read_text().splitlines()[:10]
    gone = {json.loads(line)["answer"] for line in dev[:2]}
    kb = tmp_path / "kb.jsonl"
    kb.write_text("".join(line for line in data["kb"].read_text().splitlines(keepends=True)
                          if json.loads(line)["id"] not in gone))
    args = ["eval", data["dev"], "--store", data["store"], "--pipeline", "retrieve", "--limit", "10", "--kb", kb,
            "--out", tmp_path / "run"]
    refused = vplink(*args)
    assert refused.returncode == 2 and "--allow-unknown-gold" in refused.stderr
    allowed = vplink(*args, "--allow-unknown-gold")
    assert allowed.returncode == 0, allowed.stderr
    assert set(json.loads((tmp_path / "run" / "metrics.json").read_text())["unknown_gold"]["ids"]) == gone


def test_probe_6_two_identical_eval_runs_rank_identically(data, tmp_path):
    for name in ("a", "b"):
        done = vplink("eval", data["dev"], "--store", data["store"], "--pipeline", "retrieve", "--out", tmp_path / name)
        assert done.returncode == 0, done.stderr
    a, b = predictions(tmp_path / "a"), predictions(tmp_path / "b")
    assert len(a) == 300
    assert [q for q in a if a[q] != b[q]] == []


def test_probe_7_reading_writes_nothing(data, tmp_path):
    before = files(data["store"])
    assert vplink("kb", "search", data["store"], "a politician", "--json").returncode == 0
    assert files(data["store"]) == before
    (tmp_path / "photos").mkdir()
    done = vplink("kb", "search", tmp_path / "photos", "a politician")
    assert done.returncode == 2 and "not a vplink store" in done.stderr
    assert list((tmp_path / "photos").iterdir()) == []


def test_probe_11_index_into_a_file(data, tmp_path):
    (tmp_path / "f").write_text("x")
    done = vplink("kb", "index", data["kb"], "--store", tmp_path / "f")
    assert done.returncode == 2 and "is a file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("image", ["../" * 40 + "etc/passwd", "/etc/passwd"])
def test_probe_12_kb_images_outside_the_kb_folder(tmp_path, image):
    kb = tmp_path / "kb.jsonl"
    kb.write_text(json.dumps({"id": "Q1", "name": "A"}) + "\n" + json.dumps({"id": "Q2", "name": "B", "image": image})
                  + "\n")
    done = vplink("kb", "index", kb, "--store", tmp_path / "s")
    assert done.returncode == 2 and "line 2" in done.stderr and "outside the image folder" in done.stderr
    assert not (tmp_path / "s").exists()


def test_probe_13_markup_in_a_kb_name_stays_text(data, tmp_path):
    from markdown_it import MarkdownIt

    kb = tmp_path / "kb.jsonl"
    rows = [json.loads(line) for line in data["kb"].read_text().splitlines()]
    for row in rows:
        row["name"] = f"<script>alert(1)</script> {row['name']}"
    kb.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = vplink("eval", data["dev"], "--store", data["store"], "--pipeline", "retrieve", "--limit", "100", "--kb", kb,
                  "--out", tmp_path / "run", "-k", "1")
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "run" / "report.md").read_text()
    rendered = MarkdownIt("commonmark").enable("table").render(report)
    assert "<script>" not in rendered and "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered


def test_probe_17_tuning_and_production_agree(data, tmp_path):
    bench = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_retrieval.py"), "--store", str(data["store"]),
                            "--dataset", str(data["dev"]), "--out", str(tmp_path / "bench.json"), "--latency-n", "5"],
                           capture_output=True, text=True, timeout=1200)
    assert bench.returncode == 0, bench.stderr
    written = json.loads((tmp_path / "bench.json").read_text())
    assert set(written["provenance"]) == {"git_commit", "git_dirty", "cpu"}  # its latencies name the machine
    tuned_view = written["recall"]["score fusion, default weights"]
    done = vplink("eval", data["dev"], "--store", data["store"], "--pipeline", "retrieve", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    hits = json.loads((tmp_path / "run" / "metrics.json").read_text())["hits"]
    assert tuned_view["@1"] == pytest.approx(hits["1"]) and tuned_view["@10"] == pytest.approx(hits["10"])
    assert tuned_view["@20"] == pytest.approx(hits["20"])
