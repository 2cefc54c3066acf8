"""Run the app under uvicorn."""

from __future__ import annotations

from vplink.service.app import create_app
from vplink.service.settings import ServiceSettings


def serve(settings: ServiceSettings, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Open the linker (once, before the first request) and answer HTTP on ``host:port`` until stopped."""
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def vplink_command() -> list[str]:
    """The argv that runs this Python's `vplink` command: its console script, or ``python -c`` without one."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("vplink")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from vplink.cli import main; main()"]
