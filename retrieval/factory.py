"""Small typed factories that open a store together with the encoders that built it."""

from __future__ import annotations

from pathlib import Path

from vplink.core.errors import StoreError
from vplink.retrieval.search import FusionConfig, MultiViewRetriever
from vplink.retrieval.store import CATALOGUE_VIEW, IMAGE_VIEW, KBStore
from vplink.retrieval.text_encoder import TextEncoder


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
                   config: FusionConfig | None = None, prefix: str = "vplink") -> MultiViewRetriever:
    """A retriever over an existing store, with the text and image encoders recorded in it by default."""
    store = open_store(location, prefix=prefix)
    text_encoder = TextEncoder(text_model or store.encoder_spec(CATALOGUE_VIEW))
    store.check_encoder(CATALOGUE_VIEW, text_encoder.name)
    image = None
    spec = image_encoder or store.encoder_spec(IMAGE_VIEW)
    if spec and spec != "none":
        from vplink.retrieval.image_encoders import load_image_encoder

        image = load_image_encoder(spec)
    return MultiViewRetriever(store, text_encoder, image_encoder=image, config=config)
