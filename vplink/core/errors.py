"""The errors a user can cause, each naming what is wrong and how to fix it.

Every package raises a subclass of :class:`VplinkError`; the lowest layer (``vplink.core``) owns
the base class and the subclasses several packages raise, so that they share them without
importing one another. Errors only one module raises live beside it.
"""

from __future__ import annotations


class VplinkError(Exception):
    """Base class of every error vplink raises for bad input or a bad setup."""


class InputFileError(VplinkError):
    """A JSON Lines or JSON input file is missing, unreadable or malformed."""

    def __init__(self, path: object, message: str, *, line: int | None = None, field: str | None = None,
                 fix: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        where = self.path if line is None else f"{self.path}, line {line}"
        if field:
            where += f", field '{field}'"
        text = f"{where}: {message}"
        if fix:
            text += f". Fix: {fix}"
        super().__init__(text)


class KBError(InputFileError):
    """A knowledge-base file breaks the entity contract."""


class StoreError(VplinkError):
    """The Chroma store is missing, unreachable or inconsistent."""


class EncoderMismatchError(StoreError):
    """A query was embedded by another encoder than the one that built the store."""


class SettingsError(VplinkError):
    """A setting (a flag, a ``VPLINK_*`` variable) is unknown or has a value it cannot take."""


class ModelLoadError(VplinkError):
    """A model's weights cannot be found or loaded from a local path."""


class VplinkWarning(UserWarning):
    """Something the user should know and can fix, that does not stop the command."""


class IncompleteStoreWarning(VplinkWarning):
    """A store opened for searching does not hold every entity in every view."""


class BackendMismatchWarning(VplinkWarning):
    """Queries are encoded with another text backend than the one that built the store."""
