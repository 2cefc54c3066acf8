"""A sentence-transformers model exported to ONNX from its local weights and run with onnxruntime or OpenVINO
(the CPU paths)."""

from __future__ import annotations

import json
import os
import queue
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vplink.core.errors import ModelLoadError

CACHE_ENV = "VPLINK_CACHE"
# The int8 file's name changes with its recipe, so a cache quantised by an older recipe is not reused.
INT8_FILE = "model.int8-reduced-range.onnx"
# |weight| <= 64 after reduce_range: the bound under which x86 u8s8 kernels without VNNI cannot saturate (below).
INT8_WEIGHT_BOUND = 64
# Module types the ONNX path reproduces; anything else (Dense, custom heads) needs the torch backend.
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


def cache_dir() -> Path:
    """Where exported models are kept: ``$VPLINK_CACHE`` or the user's cache folder."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("vplink"))


def onnx_model_file(model_path: Path, fingerprint: str, *, int8: bool = False) -> Path:
    """The ONNX file of a model (exported once, then reused); ``int8`` gives its dynamically quantised twin."""
    folder = cache_dir() / "onnx" / re.sub(r"[^A-Za-z0-9._-]+", "_", fingerprint)
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        export_onnx(model_path, fp32)
    if not int8:
        return fp32
    quantised = folder / INT8_FILE
    if not quantised.is_file():
        quantize_onnx(fp32, quantised, model_path)
    return quantised


def _atomic_target(target: Path) -> Path:
    """A temporary file beside ``target``: a crashed export never leaves a half-written model behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    return Path(name)


def export_onnx(model_path: Path, target: Path) -> None:
    """Export the transformer of a local sentence-transformers folder to ONNX (token embeddings out)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    # Eager attention traces into plain ONNX ops; the fused kernels of other implementations do not export.
    model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()
    inputs = list(tokenizer.model_input_names)
    sample = tokenizer(["a short text", "a somewhat longer text to pad the batch"], padding=True, return_tensors="pt")

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(inputs, args))).last_hidden_state

    tmp = _atomic_target(target)
    try:
        axes = {name: {0: "batch", 1: "tokens"} for name in [*inputs, "token_embeddings"]}
        with torch.inference_mode():
            torch.onnx.export(TokenEmbeddings(model), tuple(sample[name] for name in inputs), str(tmp),
                              input_names=inputs, output_names=["token_embeddings"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
        tmp.chmod(0o644)  # mkstemp makes it private; the cache is as readable as the model folder
        os.replace(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelLoadError(f"cannot export the text model at {model_path} to ONNX: {exc}. "
                             "Fix: use the torch backend (--text-backend torch)") from exc


def quantize_onnx(source: Path, target: Path, model_path: Path) -> None:
    """Fuse the transformer's operators, then quantise its weights to 7-bit int8 per channel (dynamic activations)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
    fused, tmp = _atomic_target(target), _atomic_target(target)
    try:
        optimized = optimize_model(str(source), model_type="bert", num_heads=int(config.get("num_attention_heads", 0)),
                                   hidden_size=int(config.get("hidden_size", 0)), opt_level=1)
        optimized.save_model_to_file(str(fused))
        # Per-channel weights keep the cosine to the fp32 vectors near 0.99; per-tensor ones drop it to ~0.95.
        # reduce_range keeps every weight within +-64, so the integers are exact on every x86 CPU: onnxruntime
        # multiplies uint8 activations by int8 weights, and without VNNI (AVX2, AVX-512 without VNNI) it sums
        # each pair of products into int16 (vpmaddubsw), which saturates once 2*255*|w| > 32767, i.e. |w| > 64.
        # With full-range weights an AVX2-only EPYC got mean cosine 0.9896 to torch where a VNNI CPU got 0.9915;
        # with these, 0.9912 and 0.9913 (tests/retrieval/test_int8_avx2.py runs the AVX2 kernels under qemu).
        # DefaultTensorType: the fused ops come from a contrib domain that ONNX shape inference cannot type.
        quantize_dynamic(str(fused), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         extra_options={"DefaultTensorType": 1})
        widest = widest_int8_weight(tmp)
        if widest > INT8_WEIGHT_BOUND:  # an onnxruntime whose reduce_range means something else
            raise ValueError(f"its int8 weights reach {widest}, beyond the +-{INT8_WEIGHT_BOUND} that CPUs without "
                             "VNNI multiply exactly")
        tmp.chmod(0o644)  # mkstemp makes it private; the cache is as readable as the model folder
        os.replace(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelLoadError(f"cannot quantise {source}: {exc}. Fix: use the onnx or torch backend") from exc
    finally:
        fused.unlink(missing_ok=True)


def widest_int8_weight(onnx_file: Path) -> int:
    """The largest magnitude among a model's int8 initialisers (its quantised weights); 0 when it has none."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_file))
    return max((int(np.abs(numpy_helper.to_array(t).astype(np.int16)).max()) for t in model.graph.initializer
                if t.data_type == onnx.TensorProto.INT8 and np.prod(t.dims) > 0), default=0)


class OnnxRuntimeRunner:
    """The ONNX transformer in onnxruntime: token embeddings of a feed of input arrays."""

    def __init__(self, onnx_file: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feed)[0]

    def run_many(self, feeds: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Token embeddings of several feeds, one after the other (onnxruntime threads inside each run)."""
        return [self(feed) for feed in feeds]


def cpu_has_bf16() -> bool:
    """Whether OpenVINO can compute in bfloat16 on this machine's CPU (False without openvino)."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoRunner:
    """The same ONNX file compiled by OpenVINO for the CPU, in float32 unless told ``bf16``.

    The precision is always set: OpenVINO's own default on CPUs with bf16 units is bf16, so a store built on
    one CPU would hold other vectors than one built on another. Faster than onnxruntime on the project's CPU
    machine (benchmarks/bench_speed.py times the whole index with it).
    """

    def __init__(self, onnx_file: Path, precision: str = "f32") -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ModelLoadError("the openvino text backend needs the openvino package. Fix: `pip install "
                                 "openvino`, or use --text-backend onnx") from None
        core = ov.Core()
        if precision == "bf16" and not cpu_has_bf16():
            # OpenVINO would quietly compute in float32 instead: the store would record vectors it does not hold.
            raise ModelLoadError("this CPU has no bfloat16 instructions, so the openvino-bf16 text backend "
                                 "cannot run here. Fix: use --text-backend openvino")
        # THROUGHPUT: one stream per core or two, each request on its own stream, so the batches of one encode call
        # run side by side (1.3x the texts/s of one two-thread stream on WikiMEL dev captions, two cores) with
        # bit-identical outputs. A lone request (one query's texts) then runs on its stream's threads alone.
        self.compiled = core.compile_model(core.read_model(str(onnx_file)), "CPU",
                                           {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "THROUGHPUT"})
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.dim = int(self.compiled.output(0).get_partial_shape()[-1].get_length())
        # The retriever and `vplink eval` encode from several threads, and one request is not thread-safe. A
        # request made (and dropped) per call while other threads inferred deadlocked `eval --batch-size 8` on
        # an AVX2 machine, stuck in create_infer_request (issue 20). So the requests are made once, here, and
        # each is lent to one caller at a time.
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))):
            self._requests.put(self.compiled.create_infer_request())

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.run_many([feed])[0]

    def run_many(self, feeds: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Token embeddings of several feeds, run side by side on the requests free now (at least one)."""
        held = [self._requests.get()]  # waits for one; more only if free now, so two callers never deadlock
        while len(held) < len(feeds):
            try:
                held.append(self._requests.get_nowait())
            except queue.Empty:
                break
        out: list[np.ndarray] = []
        try:
            for start in range(0, len(feeds), len(held)):
                running = list(zip(held, feeds[start:start + len(held)]))
                for request, feed in running:
                    request.start_async(feed)
                for request, _ in running:
                    request.wait()
                    out.append(request.get_output_tensor(0).data.copy())  # the request's buffer is reused
        finally:
            for request in held:
                self._requests.put(request)
        return out


class OnnxSentenceEncoder:
    """Tokenise, run the ONNX transformer, pool and normalise, as the sentence-transformers modules would."""

    def __init__(self, model_path: Path, onnx_file: Path, *, runtime: str = "onnxruntime",
                 precision: str = "f32", threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        modules = _read_json(model_path / "modules.json", [])
        unsupported = [m["type"] for m in modules if m.get("type", "").rsplit(".", 1)[-1] not in _SUPPORTED_MODULES]
        if unsupported:
            raise ModelLoadError(f"the ONNX backend cannot run the modules {unsupported} of {model_path}. "
                                 "Fix: use the torch backend (--text-backend torch)")
        pooling_dir = next((m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling")), "1_Pooling")
        pooling = _read_json(model_path / pooling_dir / "config.json", {"pooling_mode_mean_tokens": True})
        self.pooling = "cls" if pooling.get("pooling_mode_cls_token") else \
            "max" if pooling.get("pooling_mode_max_tokens") else "mean"
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        bert_config = _read_json(model_path / "sentence_bert_config.json", {})
        self.max_seq_length = int(bert_config.get("max_seq_length") or min(self.tokenizer.model_max_length, 512))
        self.runner = (OpenVinoRunner(onnx_file, precision) if runtime == "openvino"
                       else OnnxRuntimeRunner(onnx_file, threads))
        self.input_names = self.runner.input_names
        self.dim = self.runner.dim

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """L2-normalised float32 embeddings, computed longest-first so each batch pads to similar lengths."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_seq_length)
        columns = {name: encoded[name] for name in self.input_names if name in encoded}
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id or 0
        batches, feeds, masks = [], [], []
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            width = int(lengths[rows[0]])
            feed = {}
            for name in self.input_names:
                fill = pad_id if name == "input_ids" else 0
                batch = np.full((len(rows), width), fill, dtype=np.int64)
                for r, row in enumerate(rows):
                    values = columns[name][row] if name in columns else [0] * int(lengths[row])
                    batch[r, :len(values)] = values
                feed[name] = batch
            mask = feed.get("attention_mask")
            if mask is None:
                mask = (np.arange(width)[None, :] < lengths[rows][:, None]).astype(np.int64)
            batches.append(rows)
            feeds.append(feed)
            masks.append(mask)
        for rows, tokens, mask in zip(batches, self.runner.run_many(feeds), masks):
            out[rows] = self._pool(tokens, mask)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def _pool(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pooling == "cls":
            return tokens[:, 0]
        if self.pooling == "max":
            return np.where(mask[..., None] > 0, tokens, -1e9).max(axis=1)
        weights = mask[..., None].astype(np.float32)
        return (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def _read_json(path: Path, default):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default
