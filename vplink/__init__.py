"""vplink: link a marked region of a picture to an entity of a knowledge base it has never seen.

The names users import live here; the work is done by the packages ``retrieval``, ``agent``,
``distill`` and ``eval``. Imports are lazy so that ``import vplink`` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "Linker": ("vplink.agent.linker", "Linker"),
    "LinkerSettings": ("vplink.agent.settings", "LinkerSettings"),
    "open_linker": ("vplink.wiring", "open_linker"),
    "LinkResult": ("vplink.agent.state", "LinkResult"),
    "load_run": ("vplink.eval.compare", "load_run"),
    "compare": ("vplink.eval.compare", "compare"),
    "load_kb": ("vplink.retrieval.kb", "load_kb"),
    "open_retriever": ("vplink.retrieval.factory", "open_retriever"),
    "KBStore": ("vplink.retrieval.store", "KBStore"),
    "VplinkError": ("vplink.core.errors", "VplinkError"),
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vplink' has no attribute {name!r}")
    import importlib

    module, attr = _EXPORTS[name]
    return getattr(importlib.import_module(module), attr)
