"""Training the student on the teacher's rationales (or on gold answers, for reference), resumably.

- Deterministic: every epoch shuffles with ``seed + epoch`` and the model is initialised from ``seed``, so a
  resumed run continues exactly as an uninterrupted one would.
- The dev split is chosen by a hash of each example id (stable when more rationales are appended).
- Early stopping on dev: agreement with the teacher's choice (top-1 equals the teacher's non-NIL choice), or
  gold Hits@1 when ``gold`` is given, with the target's MRR breaking ties. Epoch 0 is the untrained model
  (with the retrieval prior it ranks like retrieval); it is kept when no epoch beats it.
- Every epoch writes ``checkpoint/`` (model and optimizer state as safetensors, progress as JSON) and a line
  of ``metrics.jsonl``; the best epoch's weights are ``model.safetensors`` beside ``config.json``.
- No NIL threshold: the scorer's confidence and NIL threshold come from `vplink eval calibrate` on its rerank
  runs (``calibration.json`` beside the weights), like every other pipeline's.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

from vplink.core.errors import VplinkError
from vplink.core.jsonl import atomic_write, iter_jsonl, write_json
from vplink.core.progress import tqdm
from vplink.core.records import Entity
from vplink.distill.data import Tensors, build_tensors
from vplink.distill.features import FeatureCache, store_matches
from vplink.distill.losses import DistillLoss, LossConfig
from vplink.distill.rationales import NIL, RationaleRecord
from vplink.distill.scorer import FORMAT
from vplink.distill.student import StudentConfig, StudentScorer, count_parameters
from vplink.retrieval.store import CATALOGUE_VIEW, KBStore


class TrainConfig(BaseModel):
    """How to train the student."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=30, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = 0.01
    batch_size: int = Field(default=64, ge=1)
    seed: int = 0
    dev_fraction: float = Field(default=0.15, gt=0, lt=1)
    patience: int = Field(default=6, ge=1)
    # Without NIL examples in dev a threshold can only be a guess: the share of in-KB answers to give up.
    # 0 (the default) sets none, so the scorer only ranks; NIL then comes from the linker's calibrated confidence.
    student: StudentConfig = Field(default_factory=StudentConfig)
    loss: LossConfig = Field(default_factory=LossConfig)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only: decaying the retrieval prior, the fusion weights, temperatures
    and biases would pull the student away from retrieval (and the scales toward 1) for no reason."""
    matrices = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    others = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": matrices, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def load_rationales(path: str | Path) -> list[RationaleRecord]:
    """Read a rationales file; the last record of a repeated id wins."""
    records: dict[str, RationaleRecord] = {}
    for line, obj in iter_jsonl(path):
        try:
            rec = RationaleRecord.model_validate(obj)
        except Exception as exc:
            raise VplinkError(f"{path}, line {line}: not a rationale record ({exc}). "
                              "Fix: use a file written by `vplink distill annotate`") from None
        if rec.candidates:
            records[rec.id] = rec
    if not records:
        raise VplinkError(f"{path} holds no rationale record with candidates. Fix: run `vplink distill annotate`")
    return list(records.values())


def is_dev(example_id: str, fraction: float, seed: int) -> bool:
    """Whether an example falls in the dev split (a hash of seed and id; stable as records are added)."""
    h = int(hashlib.sha1(f"{seed}:{example_id}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def predict(model: StudentScorer, tensors: Tensors, batch_size: int = 256) -> torch.Tensor:
    """Fused scores [N, K] of a whole split (eval mode)."""
    model.eval()
    keys = ("q_mention", "q_caption", "q_visual", "q_visual_mask", "c_name", "c_desc", "numeric", "mask")
    outs = [model({k: tensors.data[k][i:i + batch_size] for k in keys})["fused"]
            for i in range(0, len(tensors), batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, 0)


def evaluate(scores: torch.Tensor, tensors: Tensors) -> dict[str, float]:
    """Dev numbers: top-1 agreement with the target (teacher or gold), MRR of the target, and row count."""
    target = tensors.data["target"]
    keep = target >= 0
    if not keep.any():
        return {"agreement": 0.0, "mrr": 0.0, "n": 0}
    s = scores[keep]
    t = target[keep]
    # Ties go to the earlier candidate, as in serving (a stable sort of retrieval's order): a scorer that
    # gives every candidate the same score is retrieval, not a perfect ranker.
    gold = s.gather(1, t[:, None])
    earlier = torch.arange(s.shape[1])[None, :] < t[:, None]
    ranks = (s > gold).sum(1) + ((s == gold) & earlier).sum(1) + 1
    return {"agreement": float((ranks == 1).float().mean()), "mrr": float((1.0 / ranks.float()).mean()),
            "n": int(keep.sum())}


# ---------------------------------------------------------------- checkpoints (safetensors only)

def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    state = opt.state_dict()
    flat = {f"{i}.{name}": t.detach().clone().contiguous() for i, s in state["state"].items()
            for name, t in s.items() if torch.is_tensor(t)}
    meta = {"param_groups": json.dumps(state["param_groups"])}
    _save(flat, path, meta)


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        groups = json.loads(handle.metadata()["param_groups"])
    flat = load_file(str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in flat.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": groups})


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)


#: Bumped when the student's initialisation or optimiser changes: a checkpoint of the old one must not resume.
TRAINING_VERSION = "zero-correction-v2"


def _fingerprint(config: TrainConfig, train_recs: list[RationaleRecord], dev_recs: list[RationaleRecord],
                 gold: Mapping | None) -> str:
    # epochs and patience may change between runs: raising them continues the same run
    digest = hashlib.sha1(config.model_dump_json(exclude={"epochs", "patience"}).encode())
    digest.update(TRAINING_VERSION.encode())
    for split, recs in (("train", train_recs), ("dev", dev_recs)):
        digest.update(split.encode())
        for rec in recs:  # the rationales are targets too: a run with other rationales is another run
            digest.update(f"{rec.id}\0{rec.choice}\0{rec.rationale}\0".encode())
    digest.update(b"gold" if gold is not None else b"teacher")
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- training

def with_rationales(records: list[RationaleRecord], rationales: list[RationaleRecord]) -> list[RationaleRecord]:
    """``records`` with the teacher's rationale (and judgement) of every example the teacher annotated.

    The rationale is a second target only (distilling step-by-step): it never reaches the student as an input.
    """
    by_id = {r.id: r for r in rationales}
    merged = []
    for rec in records:
        judged = by_id.get(rec.id)
        if judged is None:
            merged.append(rec)
            continue
        merged.append(rec.model_copy(update={
            "rationale": judged.rationale, "model": judged.model, "prompt_version": judged.prompt_version,
            # the teacher judged its own (shorter) list: its choice counts where it is among these candidates
            "choice": judged.choice if judged.choice in rec.candidates else NIL,
            "scores": {c: judged.scores.get(c, 0.0) for c in rec.candidates}}))
    return merged


def train(records_path: str | Path, store: KBStore | Mapping[str, Entity], out_dir: str | Path, *,
          gold: Mapping[str, str | None] | None = None, rationales: str | Path | None = None,
          dev_path: str | Path | None = None, dev_gold: Mapping[str, str | None] | None = None,
          config: TrainConfig | None = None, cache_dir: str | Path | None = None, text_encoder=None,
          progress: bool = True, **overrides) -> dict:
    """Train (or resume training) a student from ``records_path``; write the scorer folder ``out_dir``.

    ``records_path`` holds candidate records (``vplink distill candidates``) or the teacher's rationale records
    (``vplink distill annotate``). ``gold`` ({example id: entity id}) makes gold answers the targets (the teacher's
    KL term is then off); without it the teacher's choices are. ``rationales``: a teacher's rationale file whose
    rationales become the second target of the examples it covers (distilling step-by-step; the term's weight is
    ``config.loss.rationale``). ``dev_path`` (+ ``dev_gold``): a separate dev split for early stopping and
    every choice; without it a hashed share of the records is held out. ``overrides`` set TrainConfig fields.
    Returns a summary (best epoch, dev numbers, NIL threshold, sizes).
    """
    config = (config or TrainConfig()).model_copy(update=overrides)
    if gold is not None:
        config = config.model_copy(update={"loss": config.loss.model_copy(update={"kl": 0.0})})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = load_rationales(records_path)
    if gold is not None:
        records = [r for r in records if r.id in gold]
    teacher_records = load_rationales(rationales) if rationales is not None else []
    if teacher_records:
        records = with_rationales(records, teacher_records)
    if dev_path is not None:
        dev_gold = dev_gold if dev_gold is not None else gold
        dev_recs = load_rationales(dev_path)
        if dev_gold is not None:
            dev_recs = [r for r in dev_recs if r.id in dev_gold]
        dev_ids = {r.id for r in dev_recs}
        train_recs = [r for r in records if r.id not in dev_ids]
    else:
        dev_gold = gold
        dev_recs = [r for r in records if is_dev(r.id, config.dev_fraction, config.seed)]
        train_recs = [r for r in records if not is_dev(r.id, config.dev_fraction, config.seed)]
    if text_encoder is None:
        from vplink.retrieval.text_encoder import TextEncoder

        text_encoder = TextEncoder(None if isinstance(store, Mapping) else store.encoder_spec(CATALOGUE_VIEW))
    cache = FeatureCache(text_encoder, cache_dir if cache_dir is not None else out.parent / ".features")
    wanted = sorted({c for r in train_recs + dev_recs for c in r.candidates})
    # a KBStore, or a plain {id: Entity} mapping (a KB read with vplink.retrieval.kb.load_kb)
    entities = {i: store[i] for i in wanted if i in store} if isinstance(store, Mapping) else store.get_entities(wanted)
    if not train_recs or not dev_recs:
        raise VplinkError(f"{len(records)} record(s) are too few to split into train and dev "
                          f"(dev_fraction={config.dev_fraction}). Fix: annotate more examples, or pass a dev split")
    k = max(len(r.candidates) for r in train_recs + dev_recs)
    # candidate vectors come from the store when its views were embedded by this encoder (no re-encoding)
    source = store if not isinstance(store, Mapping) and store_matches(store, text_encoder.name) else None
    tr = build_tensors(train_recs, entities, cache, gold=gold, k=k, store=source)
    dv = build_tensors(dev_recs, entities, cache, gold=dev_gold, k=k, store=source)

    seed_everything(config.seed)
    model = StudentScorer(config.student)
    opt = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)
    loss_fn = DistillLoss(config.loss)
    fingerprint = _fingerprint(config, train_recs, dev_recs, gold)
    ckpt = out / "checkpoint"
    state = {"epoch": 0, "best": [-1.0, -1.0], "best_epoch": 0, "bad_epochs": 0, "done": False, "fingerprint": fingerprint}
    metrics_path = out / "metrics.jsonl"
    if (ckpt / "state.json").is_file():
        saved = json.loads((ckpt / "state.json").read_text())
        if saved.get("fingerprint") == fingerprint:
            state = saved
            state["done"] = state["bad_epochs"] >= config.patience or state["epoch"] >= config.epochs
            model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
            _load_optimizer(opt, ckpt / "optimizer.safetensors")
        else:  # another configuration or other data: start over rather than mix two runs
            metrics_path.unlink(missing_ok=True)
    else:
        metrics_path.unlink(missing_ok=True)

    meta = {"format": FORMAT, "fingerprint": fingerprint, "text_encoder": text_encoder.name, "text_encoder_spec": text_encoder.spec,
            "student": config.student.model_dump(), "train": config.model_dump(mode="json"),
            "targets": "gold" if gold is not None else "teacher", "k": k,
            "teacher_models": sorted({r.model for r in records}),
            "prompt_versions": sorted({r.prompt_version for r in records}),
            "n_train": len(tr), "n_dev": len(dv), "parameters": count_parameters(model)}

    def log(row: dict) -> None:
        with metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def save_best(epoch: int, dev: dict) -> None:
        _save(model.state_dict(), out / "model.safetensors")
        write_json(out / "config.json", {**meta, "best_epoch": epoch, "dev": dev})

    # the bar to clear: retrieval's own order (position 0 first) scored the same way
    position = -torch.arange(k, dtype=torch.float32).expand(len(dv), k).masked_fill(~dv.data["mask"], -1e4)
    meta["dev_retrieval"] = evaluate(position, dv)
    if state["epoch"] == 0:
        dev0 = evaluate(predict(model, dv), dv)
        log({"epoch": 0, "dev": dev0, "train_loss": None})
        state["best"], state["best_epoch"] = [dev0["agreement"], dev0["mrr"]], 0
        save_best(0, dev0)
    bar = tqdm(range(state["epoch"] + 1, config.epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        if state["done"]:
            break
        model.train()
        torch.manual_seed(config.seed + epoch)  # dropout draws the same masks whether or not the run was resumed
        started = time.perf_counter()
        order = torch.randperm(len(tr), generator=torch.Generator().manual_seed(config.seed + epoch))
        totals: dict[str, float] = {}
        n_batches = 0
        for i in range(0, len(tr), config.batch_size):
            batch = tr.rows(order[i:i + config.batch_size])
            loss, terms = loss_fn(model(batch), batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            n_batches += 1
            for name, v in {"total": float(loss.detach()), **terms}.items():
                totals[name] = totals.get(name, 0.0) + v
        dev = evaluate(predict(model, dv), dv)
        # top-1 first, MRR breaks ties: on a small dev split top-1 alone rarely moves
        improved = (round(dev["agreement"], 9), round(dev["mrr"], 9)) > tuple(round(b, 9) for b in state["best"])
        if improved:
            state.update(best=[dev["agreement"], dev["mrr"]], best_epoch=epoch, bad_epochs=0)
            save_best(epoch, dev)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["done"] = state["bad_epochs"] >= config.patience or epoch == config.epochs
        log({"epoch": epoch, "dev": dev, "train_loss": {k: round(v / max(n_batches, 1), 5) for k, v in totals.items()},
             "seconds": round(time.perf_counter() - started, 2), "improved": improved})
        _save(model.state_dict(), ckpt / "model.safetensors")
        _save_optimizer(opt, ckpt / "optimizer.safetensors")
        with atomic_write(ckpt / "state.json") as handle:
            json.dump(state, handle)
        bar.set_postfix(dev=f"{dev['agreement']:.3f}", best=f"{state['best'][0]:.3f}@{state['best_epoch']}")
        if state["done"]:
            break
    bar.close()

    # the best weights' dev numbers, then the final config
    best = StudentScorer(config.student)
    best.load_state_dict(load_file(str(out / "model.safetensors")))
    dev_best = evaluate(predict(best, dv), dv)
    final = {**meta, "best_epoch": state["best_epoch"], "dev": dev_best,
             "metric": "gold_hits@1" if dev_gold is not None else "teacher_agreement"}
    write_json(out / "config.json", final)
    return {k: final[k] for k in ("best_epoch", "dev", "dev_retrieval", "metric", "n_train", "n_dev",
                                  "parameters", "targets")} | {"epochs_run": state["epoch"]}
