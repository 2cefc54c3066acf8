"""The `vplink` command: one sub-command group per package, each dispatching to that package."""

from __future__ import annotations

import sys
import warnings

import typer

from vplink.cli_distill import distill_app
from vplink.cli_eval import eval_app
from vplink.cli_kb import kb_app
from vplink.cli_link import link
from vplink.cli_llm import llm_app
from vplink.cli_serve import serve
from vplink.cli_tag import tag
from vplink.core.errors import VplinkError, VplinkWarning

app = typer.Typer(help="Link a marked region of a picture to a knowledge-base entity.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(kb_app, name="kb")
app.add_typer(llm_app, name="llm")
app.add_typer(eval_app, name="eval")
app.add_typer(distill_app, name="distill")
app.command("link")(link)
app.command("serve")(serve)
app.command("tag")(tag)


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """Our own warnings as one plain line (what is wrong and the fix); others as Python prints them."""
    if issubclass(category, VplinkWarning):
        typer.secho(f"warning: {message}", fg="yellow", err=True)
    else:
        _default(message, category, filename, lineno, file, line)


def main() -> None:
    """Run the CLI; a VplinkError prints its message (what is wrong and the fix), not a traceback."""
    warnings.showwarning = _show_warning
    try:
        app()
    except VplinkError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        sys.exit(2)
