"""`vplink serve`: the HTTP API and the page, over one warm linker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vplink.cli_options import linker_settings, with_linker_flags
from vplink.core.settings import field_help, load_settings
from vplink.service.settings import ServiceSettings


def _help(field: str) -> str:
    return field_help(ServiceSettings, field)


@with_linker_flags
def serve(
    image_root: Annotated[Optional[Path], typer.Option(help=_help("image_root"), exists=True, file_okay=False)] = None,
    host: Annotated[Optional[str], typer.Option(help=_help("host"))] = None,
    port: Annotated[Optional[int], typer.Option(help=_help("port"))] = None,
    max_request_mb: Annotated[Optional[float], typer.Option(min=0.01, help=_help("max_request_mb"))] = None,
    request_timeout: Annotated[Optional[float], typer.Option(min=0.1, help=_help("request_timeout_s"))] = None,
    *, linker_flags: dict[str, Any],
) -> None:
    """Serve POST /link, GET /entities/{id}, GET /health and the page at / (open http://HOST:PORT/)."""
    from vplink.service.server import serve as run
    from vplink.wiring import open_linker

    service = {"image_root": image_root, "host": host, "port": port, "max_request_mb": max_request_mb,
               "request_timeout_s": request_timeout}
    settings = load_settings(ServiceSettings, **{name: value for name, value in service.items() if value is not None})
    linker = open_linker(linker_settings(**linker_flags))
    run(settings, linker)
