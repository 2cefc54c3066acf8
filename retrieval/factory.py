"""Small typed factories that open a store together with the encoders that built it."""

from __future__ import annotations

import warnings
from pathlib import Path

from vplink.core.errors import BackendMismatchWarning, IncompleteStoreWarning, ModelLoadError, StoreError
from vplink.retrieval.search import FusionConfig, MultiViewRetriever
from vplink.retrieval.store import CATALOGUE_VIEW, FACE_VIEW, IMAGE_VIEW, KBStore, is_url
from vplink.retrieval.text_encoder import TextEncoder

__all__ = ["BackendMismatchWarning", "IncompleteStoreWarning", "open_retriever", "open_store"]


def open_store(location: str | Path, *, prefix: str | None = None, must_exist: bool = True) -> KBStore:
    """Open a store folder or Chroma server URL for reading, without writing to it.

    ``prefix`` names the KB; without one, the store must hold exactly one KB. With ``must_exist``
    an empty store is an error. A store whose indexing did not finish is opened with a warning.
    """
    if must_exist and not is_url(location) and not Path(location).is_dir():
        raise StoreError(f"no store at {location}. Fix: build one with `vplink kb index KB.jsonl --store {location}`")
    store = KBStore(location, prefix=prefix or "vplink", read_only=must_exist)
    found = store.kb_prefixes()
    if prefix is None and len(found) > 1:
        raise StoreError(f"the store at {location} holds {len(found)} KBs ({', '.join(found)}). Fix: name one "
                         "with --prefix")
    if prefix is None and found:
        store.prefix = found[0]
    if must_exist and store.count(CATALOGUE_VIEW) == 0:
        others = f" (it holds the KBs {', '.join(found)}; pass one with --prefix)" if found else ""
        raise StoreError(f"the store at {location} holds no entities under the prefix '{store.prefix}'{others}. "
                         f"Fix: run `vplink kb index KB.jsonl --store {location}` first")
    problems = store.problems() if must_exist else []
    if problems:
        warnings.warn(IncompleteStoreWarning(
            f"the store at {location} (prefix '{store.prefix}') is incomplete: {'; '.join(problems)}. Searches may "
            f"miss entities. Fix: re-run `vplink kb index KB.jsonl --store {location}` to finish it"), stacklevel=2)
    return store


def open_retriever(location: str | Path, *, text_model: str | Path | None = None, image_encoder: str | None = None,
                   config: FusionConfig | None = None, prefix: str | None = None,
                   face_models: str | Path | None = None, text_backend: str | None = None) -> MultiViewRetriever:
    """A retriever over an existing store, with the encoders and text backend recorded in it by default.

    ``text_model`` overrides the recorded model folder (e.g. when the store was moved to another
    machine); its weights must still be the ones the store was built with. A store that recorded
    no backend was built before backends existed, with torch. A store built in bfloat16, opened on a CPU
    without it, is queried in float32 under a BackendMismatchWarning.
    """
    store = open_store(location, prefix=prefix)
    recorded = store.encoder_spec(CATALOGUE_VIEW)
    built_with = store.backend_of(CATALOGUE_VIEW)
    try:
        text_encoder = TextEncoder(text_model or recorded, backend=text_backend or _runnable(built_with))
    except ModelLoadError as exc:
        if text_model:
            raise
        raise ModelLoadError(f"{exc}. The store at {location} was built with the text model at {recorded}; if it "
                             "moved, pass its folder with --text-model") from None
    store.check_encoder(CATALOGUE_VIEW, text_encoder.name, text_encoder.weights)
    if built_with and text_encoder.backend != built_with:
        warnings.warn(BackendMismatchWarning(
            f"the store at {location} was embedded with the {built_with} text backend but queries use "
            f"{text_encoder.backend}: their vectors differ slightly and rankings may shift. Fix: leave the "
            "backend unset to use the store's"), stacklevel=2)
    image = None
    spec = image_encoder or store.encoder_spec(IMAGE_VIEW)
    if spec and spec != "none":
        from vplink.retrieval.image_encoders import load_image_encoder

        image = load_image_encoder(spec)
    faces = None
    if FACE_VIEW in store.views():
        from vplink.retrieval.faces import FaceModels

        faces = FaceModels(face_models)
        store.check_encoder(FACE_VIEW, faces.name)
    return MultiViewRetriever(store, text_encoder, image_encoder=image, face_models=faces, config=config)


def _runnable(backend: str | None) -> str | None:
    """The store's backend, or float32 OpenVINO where the store's bfloat16 cannot run (the vectors differ by
    less than the backends' test tolerance, so search still works; the caller warns)."""
    from vplink.retrieval.onnx_text import cpu_has_bf16

    return "openvino" if backend == "openvino-bf16" and not cpu_has_bf16() else backend
