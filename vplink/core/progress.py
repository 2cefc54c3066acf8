"""Progress bars: the notebook widget where ipywidgets exist, plain text otherwise, without a warning."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # tqdm.auto warns once when Jupyter is running but ipywidgets is not installed; the text bar is fine.
    warnings.filterwarnings("ignore", message="IProgress not found")
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
