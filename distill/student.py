"""The student: a compact scorer over frozen text features, with MIMIC-style separate interaction units.

Inputs are frozen sentence-embedding vectors (see :mod:`vplink.distill.features`): for the query the mention,
the caption, and an optional *visual evidence* vector (the embedding of what a vision model said the
marked region shows, with a presence mask); for each candidate its name view and description view, plus
numbers describing how retrieval found it (per-channel found / 1/rank / score, fused score, position).

Five interaction units each score every candidate (MIMIC: Zhang et al., 2023, "Multimodal Entity Linking
with ... Interaction Units" — here over frozen features, so the whole model is ~0.6 M parameters):

- **global text unit** — the caption and mention together vs the candidate's description (cosine of
  learned projections, a learned scale);
- **local/name unit** — the mention vs the candidate's name view, plus a small MLP over the raw cosines
  of the four (query view, entity view) pairs and the retrieval numbers;
- **gated visual unit** — the visual evidence vector vs the candidate's description; a gate computed from
  the evidence (times its presence mask) can switch it off. On text-only data (WikiMEL) the mask is 0, the
  unit scores 0 and its fused weight starts at 0, so an untrained unit can never add noise;
- **cross-modal unit** — a fused query (caption + gated visual evidence) vs a fused candidate (name +
  description), the interaction across views;
- **pair unit** — an MLP over the element-wise products of the caption and mention with the candidate's
  description and name (plus the retrieval numbers): the query read against the candidate jointly.

The fused score is a learned weighted sum of the unit scores plus a *retrieval prior* (learned weights on
the fused score relative to the list's best, and on 1/position). Retrieval alone is a strong ranker (WikiMEL top-1 ≈ 0.6-0.9 of the
time), and a few hundred teacher labels cannot relearn it: the units' fusion weights start at zero, so the
untrained student ranks exactly like retrieval and training learns *corrections* to it. Training (see :mod:`vplink.distill.losses`) puts
an InfoNCE loss on every unit as well as on the fused score (the unit-consistent objective), so each unit
ranks on its own and none free-rides on the others; the query representation of the global unit is
also pulled toward the embedding of the teacher's rationale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from vplink.distill.features import N_NUMERIC

# where the relative fused score and 1/(position+1) sit in the numeric features
PRIOR_FUSED, PRIOR_POSITION = N_NUMERIC - 3, N_NUMERIC - 2

UNITS: tuple[str, ...] = ("global", "local", "visual", "cross", "pair")
MASKED = -1e4  # a finite "minus infinity" keeps softmax and KL free of NaN on padded slots


class StudentConfig(BaseModel):
    """The student's sizes."""

    model_config = ConfigDict(extra="forbid")

    dim: int = 384
    hidden: int = 128
    n_numeric: int = N_NUMERIC
    dropout: float = 0.1
    retrieval_prior: bool = True


def _proj(d_in: int, d_out: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, d_out))


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine between a query vector [B, H] and each candidate vector [B, K, H] -> [B, K]."""
    return torch.einsum("bh,bkh->bk", F.normalize(a, dim=-1), F.normalize(b, dim=-1))


class StudentScorer(nn.Module):
    """Scores a batch of queries against their candidate lists; returns the fused and per-unit scores."""

    def __init__(self, config: StudentConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or StudentConfig()
        d, h, p = c.dim, c.hidden, c.dropout
        # global text unit
        self.g_query = nn.Sequential(nn.Dropout(p), nn.Linear(2 * d, h), nn.GELU(), nn.Linear(h, h))
        self.g_cand = _proj(d, h, p)
        # local / name unit
        self.l_query = _proj(d, h, p)
        self.l_cand = _proj(d, h, p)
        self.l_numeric = nn.Sequential(nn.Linear(c.n_numeric + 4, 32), nn.GELU(), nn.Linear(32, 1))
        # gated visual unit
        self.v_query = _proj(d, h, p)
        self.v_cand = _proj(d, h, p)
        self.v_gate = nn.Linear(d, 1)
        # cross-modal unit
        self.x_query_text = _proj(d, h, p)
        self.x_query_vis = _proj(d, h, p)
        self.x_cand_name = _proj(d, h, p)
        self.x_cand_desc = _proj(d, h, p)
        # pair unit: the caption and mention read against the candidate jointly, dimension by dimension
        # (element-wise products of the normalised vectors, so it learns which directions matter in-domain)
        self.p_mlp = nn.Sequential(nn.Dropout(p), nn.Linear(3 * d + c.n_numeric + 4, h), nn.GELU(), nn.Linear(h, 1))
        # per-unit temperatures (as log-scales) and the fusion weights; visual starts switched off
        self.log_scale = nn.Parameter(torch.full((len(UNITS),), 2.3))  # e^2.3 ≈ 10
        # The correction starts at zero: the untrained student's score is the retrieval prior alone, so it
        # ranks exactly as retrieval does, and training can only move it as far as the labels justify.
        # (The units still learn from the start through their own InfoNCE terms.)
        self.fuse = nn.Parameter(torch.zeros(len(UNITS)))
        # the retrieval prior: weights of the relative fused score and of 1/position
        self.prior = nn.Parameter(torch.tensor([1.0, 1.0]))
        # the head that maps the query representation into the rationale's embedding space
        self.rationale_head = nn.Linear(h, d)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch``: q_mention, q_caption, q_visual [B, D]; q_visual_mask [B]; c_name, c_desc [B, K, D];
        numeric [B, K, F]; mask [B, K] (True = a real candidate). Returns scores [B, K] per unit and fused."""
        qm, qc, qv = batch["q_mention"], batch["q_caption"], batch["q_visual"]
        vmask = batch["q_visual_mask"].float()
        cn, cd, mask = batch["c_name"], batch["c_desc"], batch["mask"]
        scale = self.log_scale.exp().clamp(max=100.0)

        q_g = self.g_query(torch.cat([qc, qm], dim=-1))
        s_global = scale[0] * _cos(q_g, self.g_cand(cd))

        raw = torch.stack([_cos(qm, cn), _cos(qc, cd), _cos(qm, cd), _cos(qc, cn)], dim=-1)
        s_local = scale[1] * _cos(self.l_query(qm), self.l_cand(cn)) \
            + self.l_numeric(torch.cat([batch["numeric"], raw], dim=-1)).squeeze(-1)

        gate = torch.sigmoid(self.v_gate(qv)).squeeze(-1) * vmask  # [B]; 0 when no visual evidence
        s_visual = gate.unsqueeze(-1) * scale[2] * _cos(self.v_query(qv), self.v_cand(cd))

        q_x = torch.tanh(self.x_query_text(qc) + gate.unsqueeze(-1) * self.x_query_vis(qv))
        c_x = torch.tanh(self.x_cand_name(cn) + self.x_cand_desc(cd))
        s_cross = scale[3] * _cos(q_x, c_x)

        qcn, qmn, cnn, cdn = (F.normalize(t, dim=-1) for t in (qc, qm, cn, cd))
        joint = torch.cat([qcn.unsqueeze(1) * cdn, qmn.unsqueeze(1) * cnn, qcn.unsqueeze(1) * cnn,
                           batch["numeric"], raw], dim=-1)
        s_pair = self.p_mlp(joint).squeeze(-1)

        units = {"global": s_global, "local": s_local, "visual": s_visual, "cross": s_cross, "pair": s_pair}
        num = batch["numeric"]
        prior = self.prior[0] * num[..., PRIOR_FUSED] + self.prior[1] * num[..., PRIOR_POSITION] \
            if self.config.retrieval_prior else 0.0
        fused = prior + sum(self.fuse[i] * units[name] for i, name in enumerate(UNITS))
        out = {name: s.masked_fill(~mask, MASKED) for name, s in units.items()}
        out["fused"] = fused.masked_fill(~mask, MASKED)
        out["gate"] = gate
        out["query_rep"] = self.rationale_head(q_g)
        return out


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
