"""Small typed factories that open a store together with the encoders that built it."""

from __future__ import annotations

import warnings
from pathlib import Path

from vplink.retrieval.errors import StoreError
from vplink.retrieval.search import FusionConfig, MultiViewRetriever
from vplink.retrieval.store import CATALOGUE_VIEW, IMAGE_VIEW, KBStore
from vplink.retrieval.text_encoder import TextEncoder


class BackendMismatchWarning(UserWarning):
    """Queries are encoded with another text backend than the one that built the store."""


def open_store(location: str | Path, *, prefix: str = "vplink", must_exist: bool = True) -> KBStore:
    """Open a store folder or Chroma server URL; with ``must_exist`` an empty store is an error."""
    if must_exist and not str(location).startswith(("http://", "https://")) and not Path(location).is_dir():
        raise StoreError(f"no store at {location}. Fix: build one with `vplink kb index KB.jsonl --store {location}`")
    store = KBStore(location, prefix=prefix)
    if must_exist and store.count(CATALOGUE_VIEW) == 0:
        raise StoreError(f"the store at {location} holds no entities. Fix: run `vplink kb index KB.jsonl "
                         f"--store {location}` first")
    return store


def open_retriever(location: str | Path, *, text_model: str | Path | None = None, image_encoder: str | None = None,
                   config: FusionConfig | None = None, prefix: str = "vplink",
                   text_backend: str | None = None) -> MultiViewRetriever:
    """A retriever over an existing store, with the encoders and text backend recorded in it by default."""
    store = open_store(location, prefix=prefix)
    built_with = store.backend_of(CATALOGUE_VIEW)
    text_encoder = TextEncoder(text_model or store.encoder_spec(CATALOGUE_VIEW), backend=text_backend or built_with)
    store.check_encoder(CATALOGUE_VIEW, text_encoder.name)
    if built_with and text_encoder.backend != built_with:
        warnings.warn(f"the store at {location} was embedded with the {built_with} text backend but queries use "
                      f"{text_encoder.backend}: their vectors differ slightly and rankings may shift. Fix: leave "
                      "the backend unset to use the store's", BackendMismatchWarning, stacklevel=2)
    image = None
    spec = image_encoder or store.encoder_spec(IMAGE_VIEW)
    if spec and spec != "none":
        from vplink.retrieval.image_encoders import load_image_encoder

        image = load_image_encoder(spec)
    return MultiViewRetriever(store, text_encoder, image_encoder=image, config=config)
