"""Run the app under uvicorn."""

from __future__ import annotations

from vplink.agent.linker import Linker
from vplink.service.app import create_app
from vplink.service.settings import ServiceSettings


def serve(settings: ServiceSettings, linker: Linker, *, log_level: str = "info") -> None:
    """Answer HTTP on the settings' host and port with ``linker`` (opened once, before) until stopped."""
    import uvicorn

    uvicorn.run(create_app(settings, linker), host=settings.host, port=settings.port, log_level=log_level)


def vplink_command() -> list[str]:
    """The argv that runs this Python's `vplink` command: its console script, or ``python -c`` without one."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("vplink")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from vplink.cli import main; main()"]
