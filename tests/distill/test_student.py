"""The student's shapes, size, masking and visual gate."""

from __future__ import annotations

import torch

from vplink.distill.features import N_NUMERIC
from vplink.distill.student import UNITS, StudentConfig, StudentScorer, count_parameters


def _batch(b=3, k=5, d=384, visual=False):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(b, k, dtype=torch.bool)
    mask[0, 3:] = False
    return {"q_mention": torch.randn(b, d, generator=g), "q_caption": torch.randn(b, d, generator=g),
            "q_visual": torch.randn(b, d, generator=g) if visual else torch.zeros(b, d),
            "q_visual_mask": torch.full((b,), 1.0 if visual else 0.0),
            "c_name": torch.randn(b, k, d, generator=g), "c_desc": torch.randn(b, k, d, generator=g),
            "numeric": torch.randn(b, k, N_NUMERIC, generator=g), "mask": mask}


def test_shapes_and_parameter_budget():
    model = StudentScorer()
    out = model(_batch())
    for name in (*UNITS, "fused"):
        assert out[name].shape == (3, 5)
    assert out["query_rep"].shape == (3, 384)
    assert count_parameters(model) < 10_000_000
    assert count_parameters(model) < 1_000_000  # compact in fact, not just under the cap


def test_padded_candidates_score_lowest():
    out = StudentScorer().eval()(_batch())
    assert (out["fused"][0, 3:] < out["fused"][0, :3].min()).all()


def test_visual_unit_is_off_without_evidence_and_gated_with_it():
    model = StudentScorer(StudentConfig()).eval()
    off = model(_batch(visual=False))
    assert torch.all(off["gate"] == 0) and torch.all(off["visual"][off["visual"] > -1e3] == 0)
    on = model(_batch(visual=True))
    assert torch.all(on["gate"] > 0) and torch.all(on["gate"] < 1)
