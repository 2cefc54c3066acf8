"""The distillation losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from vplink.distill.losses import DistillLoss, LossConfig, info_nce, rationale_loss, teacher_kl
from vplink.distill.student import UNITS


def test_info_nce_matches_hand_value():
    scores = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, -1e4]])
    target = torch.tensor([0, 1])
    want0 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1)))
    want1 = -math.log(0.5)  # the padded slot does not count
    assert info_nce(scores, target).item() == pytest.approx((want0 + want1) / 2, rel=1e-5)


def test_info_nce_skips_nil_rows_and_keeps_graph_when_empty():
    scores = torch.tensor([[1.0, 0.0], [0.0, 3.0]], requires_grad=True)
    assert info_nce(scores, torch.tensor([0, -1])).item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-5)
    empty = info_nce(scores, torch.tensor([-1, -1]))
    assert empty.item() == 0.0 and empty.requires_grad


def test_teacher_kl_matches_hand_value():
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0]])
    mask = torch.tensor([[True, True]])
    p = [math.exp(10) / (math.exp(10) + 1), 1 / (math.exp(10) + 1)]  # teacher sharpened by T_t = 0.1
    q = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]  # student softened by T = 2
    want = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q)) * 4
    got = teacher_kl(student, teacher, mask, temperature=2.0, teacher_temperature=0.1)
    assert got.item() == pytest.approx(want, rel=1e-4)


def test_teacher_kl_is_zero_for_identical_distributions_and_ignores_padding():
    s = torch.tensor([[0.3, 0.1, -1e4]])
    mask = torch.tensor([[True, True, False]])
    assert teacher_kl(s, s * 0.1, mask, temperature=1.0, teacher_temperature=0.1).item() == pytest.approx(0, abs=1e-5)


def test_rationale_loss_is_one_minus_cosine():
    q = torch.tensor([[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    r = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    got = rationale_loss(q, r, torch.tensor([True, True, False]))
    assert got.item() == pytest.approx((1.0 + 0.0) / 2, abs=1e-6)


def test_distill_loss_weights_the_terms():
    scores = torch.tensor([[2.0, 0.0]])
    out = {name: scores for name in ("fused", *UNITS)}
    out["query_rep"] = torch.tensor([[1.0, 0.0]])
    batch = {"target": torch.tensor([0]), "mask": torch.tensor([[True, True]]), "teacher": torch.tensor([[1.0, 0.0]]),
             "has_teacher": torch.tensor([True]), "rationale": torch.tensor([[0.0, 1.0]]),
             "has_rationale": torch.tensor([True]), "q_visual_mask": torch.tensor([0.0])}
    cfg = LossConfig(nce=1.0, kl=0.5, rationale=0.1, unit=0.25)
    total, terms = DistillLoss(cfg)(out, batch)
    nce = math.log(1 + math.exp(-2))
    assert terms["unit_visual"] == 0.0  # no row has visual evidence
    want = nce + 0.5 * terms["kl"] + 0.1 * 1.0 + 0.25 * (len(UNITS) - 1) * nce  # every unit but the visual
    assert total.item() == pytest.approx(want, rel=1e-5)
