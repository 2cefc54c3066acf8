"""The reranker protocol the `rerank` node is handed, and the default that keeps retrieval's order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from vplink.agent.state import Description
from vplink.core.records import Candidate, LinkQuery


@runtime_checkable
class Reranker(Protocol):
    """Scores every (query, candidate) pair; higher is better. Implemented by the distilled scorer."""

    name: str

    def score(self, query: LinkQuery, description: Description | None, evidence_text: str,
              candidates: Sequence[Candidate]) -> list[float]:
        """One score per candidate, in the candidates' order."""
        ...


class RetrievalScoreReranker:
    """Keeps the fused retrieval scores: the rerank step until a distilled scorer is given."""

    # Run records name the reranker: the scores are retrieval's fused ones (a weighted score sum by default,
    # reciprocal-rank fusion only with FusionConfig(method="rrf")).
    name = "retrieval-score"

    def score(self, query: LinkQuery, description: Description | None, evidence_text: str,
              candidates: Sequence[Candidate]) -> list[float]:
        """The candidates' own fused scores."""
        return [c.score for c in candidates]
