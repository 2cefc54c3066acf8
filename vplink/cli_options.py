"""The options `link`, `serve` and `eval` share, one per `LinkerSettings` field: each flag's help names the
field's default, and a flag left out (None) lets the environment or that default decide."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, get_type_hints

import typer

from vplink.agent.settings import LinkerSettings
from vplink.core.settings import field_help


def _help(field: str) -> str:
    return field_help(LinkerSettings, field)


Store = Annotated[Optional[str], typer.Option("--store", help=_help("store"))]
Prefix = Annotated[Optional[str], typer.Option("--prefix", help=_help("prefix"))]
K = Annotated[Optional[int], typer.Option("-k", "--k", min=1, help=_help("k"))]
TextModel = Annotated[Optional[Path], typer.Option("--text-model", help=_help("text_model"))]
LlmUrl = Annotated[Optional[str], typer.Option("--llm-url", help=_help("llm_url"))]
LlmModel = Annotated[Optional[str], typer.Option("--llm-model", help=_help("llm_model"))]
LlmTimeout = Annotated[Optional[float], typer.Option("--llm-timeout", min=0.1, help=_help("llm_timeout"))]
Vision = Annotated[Optional[bool], typer.Option("--vision/--no-vision", help=_help("vision"), show_default=False)]
Scorer = Annotated[Optional[Path], typer.Option("--scorer", help=_help("scorer"))]
Calibration = Annotated[Optional[Path], typer.Option("--calibration", help=_help("calibration"))]
Nil = Annotated[Optional[bool], typer.Option("--nil/--no-nil", help=_help("nil"), show_default=False)]
NilThreshold = Annotated[Optional[float], typer.Option("--nil-threshold", min=0.0, max=1.0,
                                                       help=_help("nil_threshold"))]


#: Every linker flag of the commands that open a linker, by its LinkerSettings field.
LINKER_FLAGS: dict[str, Any] = {"store": Store, "prefix": Prefix, "k": K, "text_model": TextModel, "llm_url": LlmUrl,
                                "llm_model": LlmModel, "llm_timeout": LlmTimeout, "vision": Vision, "scorer": Scorer,
                                "calibration": Calibration, "nil": Nil, "nil_threshold": NilThreshold}


def with_linker_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """A typer command that also takes every flag of :data:`LINKER_FLAGS` and receives the ones given as one
    dict, ``linker_flags`` (for :func:`linker_settings`), instead of one parameter each."""
    hints = get_type_hints(command, include_extras=True)
    own = [parameter.replace(annotation=hints[parameter.name])
           for parameter in inspect.signature(command).parameters.values() if parameter.name != "linker_flags"]
    flags = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
             for name, annotation in LINKER_FLAGS.items()]

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        given = {name: value for name in LINKER_FLAGS if (value := values.pop(name)) is not None}
        return command(linker_flags=given, **values)

    run.__signature__ = inspect.Signature([*own, *flags])  # type: ignore[attr-defined]
    run.__annotations__ = {parameter.name: parameter.annotation for parameter in [*own, *flags]}
    return run


def linker_settings(**flags: Any) -> LinkerSettings:
    """The settings from the flags that were given; the environment and the defaults fill in the rest."""
    return LinkerSettings.load(**{name: value for name, value in flags.items() if value is not None})


def say_model_server(settings: LinkerSettings, console) -> None:
    """Tell, before the wait, which model server is asked and how long one request may take."""
    from rich.markup import escape

    from vplink.agent.llm_client import LLMConfig

    if settings.llm_url:
        console.print(f"asking the model server at {escape(settings.llm_url)} (up to "
                      f"{settings.llm_timeout or LLMConfig.model_fields['timeout_s'].default:g} s per request; "
                      "--llm-timeout changes it) ...", highlight=False)
