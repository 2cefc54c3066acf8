"""The distillation objective: InfoNCE on the teacher's choice, KL to its scores, a rationale term, unit consistency."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from vplink.distill.student import UNITS


def info_nce(scores: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the target candidate against the others (padded slots already hold a huge negative).

    ``scores`` [B, K] are logits (temperatures live in the model); rows with ``target < 0`` or ``~valid`` are
    left out. No row left: a zero that still carries the graph.
    """
    keep = target >= 0
    if valid is not None:
        keep = keep & valid
    if not keep.any():
        return scores.sum() * 0.0
    return F.cross_entropy(scores[keep], target[keep])


def teacher_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, *, temperature: float = 1.0,
               teacher_temperature: float = 0.1, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``T² · KL(p_teacher ‖ p_student)`` over the shown candidates, averaged over rows.

    The teacher's scores are in [0, 1], so they are sharpened by ``teacher_temperature`` into a distribution;
    the student's logits are softened by ``temperature`` (Hinton et al.'s T² keeps gradients comparable).
    """
    keep = mask.any(dim=-1) if valid is None else valid & mask.any(dim=-1)
    if not keep.any():
        return student.sum() * 0.0
    t_logits = (teacher / teacher_temperature).masked_fill(~mask, -1e4)
    p = F.softmax(t_logits[keep], dim=-1)
    log_q = F.log_softmax(student[keep] / temperature, dim=-1)
    kl = (p * (torch.log(p.clamp_min(1e-12)) - log_q)).masked_fill(~mask[keep], 0.0).sum(-1)
    return kl.mean() * temperature ** 2


def rationale_loss(query_rep: torch.Tensor, rationale: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos(query_rep, rationale embedding)`` over rows that have a rationale."""
    if not valid.any():
        return query_rep.sum() * 0.0
    return (1.0 - F.cosine_similarity(query_rep[valid], rationale[valid], dim=-1)).mean()


class LossConfig(BaseModel):
    """The weights of the objective's terms and the KL temperatures."""

    model_config = ConfigDict(extra="forbid")

    nce: float = Field(default=1.0, ge=0)
    kl: float = Field(default=0.5, ge=0)
    rationale: float = Field(default=0.1, ge=0)
    unit: float = Field(default=0.25, ge=0, description="weight of each unit's own InfoNCE")
    temperature: float = Field(default=1.0, gt=0)
    teacher_temperature: float = Field(default=0.1, gt=0)


class DistillLoss:
    """Combines the terms; returns the total and each term (detached) for logging."""

    def __init__(self, config: LossConfig | None = None) -> None:
        self.config = config or LossConfig()

    def __call__(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        c = self.config
        target, mask = batch["target"], batch["mask"]
        terms: dict[str, torch.Tensor] = {}
        terms["nce"] = info_nce(out["fused"], target)
        if c.kl > 0:
            terms["kl"] = teacher_kl(out["fused"], batch["teacher"], mask, temperature=c.temperature,
                                     teacher_temperature=c.teacher_temperature, valid=batch["has_teacher"])
        if c.rationale > 0:
            terms["rationale"] = rationale_loss(out["query_rep"], batch["rationale"], batch["has_rationale"])
        if c.unit > 0:
            for name in UNITS:
                # the visual unit only counts on rows that have visual evidence
                valid = batch["q_visual_mask"].bool() if name == "visual" else None
                terms[f"unit_{name}"] = info_nce(out[name], target, valid)
        weights = {"nce": c.nce, "kl": c.kl, "rationale": c.rationale}
        total = sum(weights.get(k, c.unit) * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}
