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


def test_the_untrained_student_ranks_exactly_as_retrieval(small_store, text_encoder, dev_slice):
    """Real candidates of real dev mentions, scored through the serving path: before any training the
    student's order is retrieval's order (its correction starts at zero, so it cannot subtract)."""
    from vplink.core.records import LinkQuery
    from vplink.distill.scorer import DistilledScorer
    from vplink.retrieval.search import MultiViewRetriever, QueryViews

    torch.manual_seed(0)
    scorer = DistilledScorer(StudentScorer(), {}, text_encoder, small_store)
    retriever = MultiViewRetriever(small_store, text_encoder)
    rows = dev_slice[:20]
    found = retriever.search_batch([QueryViews(mention=r["mention"], context=r["text"]) for r in rows], k=20)
    for row, candidates in zip(rows, found):
        scores = scorer.score(LinkQuery(text=row["text"], mention=row["mention"]), None, "evidence text", candidates)
        assert all(a > b for a, b in zip(scores, scores[1:])), row["id"]  # strictly retrieval's order


def test_the_correction_is_what_training_moves():
    model = StudentScorer().eval()
    batch = _batch()
    assert torch.all(model.fuse == 0)
    before = model(batch)["fused"]
    with torch.no_grad():
        model.fuse.fill_(0.5)
    assert not torch.allclose(model(batch)["fused"], before)  # the units do reach the score once weighted
