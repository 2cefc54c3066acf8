"""`vplink serve`: the HTTP API and the page, over one warm linker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def serve(
    store: Annotated[str, typer.Option(help="Store folder or Chroma server URL")],
    prefix: Annotated[str, typer.Option(help="Collection name prefix of the store")] = "vplink",
    llm_url: Annotated[Optional[str], typer.Option(help="vLLM server, e.g. http://127.0.0.1:8801/v1")] = None,
    llm_model: Annotated[Optional[str], typer.Option(help="Served model name (default: the server's first)")] = None,
    vision: Annotated[bool, typer.Option(help="The model sees images: send the marked picture and the crop")] = False,
    scorer: Annotated[Optional[Path], typer.Option(help="A distilled scorer folder to rerank with")] = None,
    image_root: Annotated[Optional[Path], typer.Option(help="Folder whose pictures requests may name by path",
                                                       exists=True, file_okay=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    max_request_mb: Annotated[float, typer.Option(help="Larger requests are refused with 413", min=0.01)] = 20.0,
    request_timeout: Annotated[Optional[float], typer.Option(
        help="Seconds a request may link before it gets 504 and its work stops (default: 120)", min=0.1)] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="Candidates to keep")] = 10,
) -> None:
    """Serve POST /link, GET /entities/{id}, GET /health and the page at / (open http://HOST:PORT/)."""
    from vplink.service.server import serve as run
    from vplink.service.settings import ServiceSettings

    settings = ServiceSettings(store=store, prefix=prefix, llm_url=llm_url, llm_model=llm_model, vision=vision,
                               scorer=scorer, image_root=image_root, k=k,
                               max_request_bytes=int(max_request_mb * 1024 * 1024),
                               **({"request_timeout_s": request_timeout} if request_timeout else {}))
    run(settings, host=host, port=port)
