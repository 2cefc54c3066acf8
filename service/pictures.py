"""Where a request's picture comes from: an upload kept in a temporary file, or a path under the image root."""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vplink.service.errors import RequestError

#: File endings the picker lists under the image root.
PICTURE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
#: At most this many pictures are listed, so a huge root cannot stall the page.
MAX_LISTED = 1000


class PicturePathError(RequestError):
    """A picture named by path is outside the image root, absent, or no image root is configured."""

    def __init__(self, name: str, message: str, fix: str, *, status: int = 422) -> None:
        super().__init__(f"picture path {name!r}: {message}", fix, status=status)


class PictureRoot:
    """The folder whose pictures requests may name by path; nothing outside it is read."""

    def __init__(self, root: Path | None) -> None:
        self.root = root.resolve() if root else None

    def resolve(self, name: str) -> Path:
        """The file ``name`` (relative to the root) names, refused when it leaves the root or is absent."""
        if self.root is None:
            raise PicturePathError(name, "this server reads no pictures by path",
                                   "upload the picture, or start the server with --image-root DIR")
        # resolve() follows symlinks and '..', so a link or a climb out of the root is caught too.
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise PicturePathError(name, f"it lies outside the image root {self.root}",
                                   "name a picture under the image root, relative to it", status=403)
        if not path.is_file():
            raise PicturePathError(name, "no such file under the image root",
                                   "pick one from GET /pictures", status=404)
        return path

    def listing(self) -> list[str]:
        """Pictures under the root, as paths relative to it, sorted; at most :data:`MAX_LISTED`."""
        if self.root is None:
            return []
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in sorted(files):
                if Path(name).suffix.lower() in PICTURE_SUFFIXES:
                    found.append(Path(folder, name).relative_to(self.root).as_posix())
                    if len(found) >= MAX_LISTED:
                        return found
        return found


@contextmanager
def temporary_picture(data: bytes, filename: str | None) -> Iterator[Path]:
    """The uploaded bytes in a temporary file of their own (so concurrent uploads never share one), removed after."""
    suffix = Path(filename or "").suffix.lower()
    # A name never used before: the linker caches decoded pictures by path, so a recycled name must not
    # bring back an earlier upload's picture.
    handle, name = tempfile.mkstemp(prefix=f"vplink-upload-{uuid.uuid4().hex}-",
                                    suffix=suffix if re.fullmatch(r"\.\w{1,5}", suffix) else "")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
