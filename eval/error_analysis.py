"""Where a run's wrong answers come from, as data: every wrong top-1 in its class, the counts, the worst cases.

The harness writes it as ``errors.json``; report.md and the notebook view both render from that record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from vplink.core.records import LabeledQuery
from vplink.eval.metrics import Prediction, gold_rank

ERRORS = "errors.json"
#: How many of the worst errors the analysis keeps.
WORST = 20
#: Rows of each worst error's ranking the analysis keeps.
RANKING_ROWS = 5
#: Texts (captions, error messages) are clipped to this many characters.
CLIP = 300

#: Error classes in the order they are tested; an error falls in the first that matches.
ERROR_CLASSES = {
    "failed": "the pipeline raised an error on this query",
    "called NIL": "the gold is in the KB but the pipeline answered NIL",
    "linked a NIL query": "the gold is NIL (not in the KB) but the pipeline linked an entity",
    "same-name confusion": "the top-1 entity has the same name as the gold entity",
    "gold not retrieved": "the gold entity is not among the retrieved candidates",
    "surname-only mention": "the mention is a single word (often a surname), the gold was retrieved",
    "other": "the gold was retrieved but ranked below another entity",
}


class ErrorClass(BaseModel):
    """One class of errors: its name, how many fall in it, their share of all errors, and what it means."""

    name: str
    errors: int
    share: float
    meaning: str


class RankedRow(BaseModel):
    """One row of a wrong answer's ranking."""

    rank: int
    id: str
    name: str
    score: float
    gold: bool


class WorstError(BaseModel):
    """One of the worst errors: the query, its gold, and what the pipeline answered instead."""

    number: int
    query_id: str
    error_class: str
    mention: str | None
    text: str | None
    #: None: the gold is NIL (not in the KB).
    gold_id: str | None
    gold_name: str | None
    #: None: the gold was not ranked at all.
    gold_rank: int | None
    #: The pipeline's error message, when the query failed.
    error: str | None = None
    answered_nil: bool = False
    ranking: list[RankedRow] = []


class ErrorAnalysis(BaseModel):
    """The error analysis of one run."""

    queries: int
    wrong: int
    classes: list[ErrorClass]
    worst: list[WorstError]


def classify_error(example: LabeledQuery, prediction: Prediction | None, names: Mapping[str, str]) -> str | None:
    """The class of a wrong top-1 answer (see :data:`ERROR_CLASSES`), or None when top-1 is right."""
    if prediction is None or prediction.error is not None:
        return "failed"
    if example.answer is None:
        return None if prediction.nil else "linked a NIL query"
    if prediction.nil:
        return "called NIL"
    if gold_rank(prediction, example.answer) == 1:
        return None
    top = prediction.ranking[0] if prediction.ranking else None
    gold_name = names.get(example.answer)
    top_name = (top.name or names.get(top.id)) if top else None
    if gold_name and top_name and gold_name.strip().casefold() == top_name.strip().casefold():
        return "same-name confusion"
    if example.answer not in prediction.candidate_ids():
        return "gold not retrieved"
    if example.mention and len(example.mention.split()) == 1:
        return "surname-only mention"
    return "other"


def analyse_errors(examples: Sequence[LabeledQuery], predictions: Mapping[str, Prediction],
                   names: Mapping[str, str], worst: int = WORST) -> ErrorAnalysis:
    """Classify every wrong top-1 answer, count the classes, and keep the ``worst`` errors, worst first:
    gold not ranked at all, then the gold's rank from lowest; ties by the top-1 score."""
    wrong = [(example, predictions.get(example.id), cls) for example in examples
             if (cls := classify_error(example, predictions.get(example.id), names)) is not None]
    counts = Counter(cls for _, _, cls in wrong)
    classes = [ErrorClass(name=cls, errors=counts[cls], share=counts[cls] / len(wrong), meaning=meaning)
               for cls, meaning in ERROR_CLASSES.items() if counts[cls]]
    kept = [_worst_error(number, example, prediction, cls, names)
            for number, (example, prediction, cls) in enumerate(sorted(wrong, key=_badness)[:worst], start=1)]
    return ErrorAnalysis(queries=len(examples), wrong=len(wrong), classes=classes, worst=kept)


def _worst_error(number: int, example: LabeledQuery, prediction: Prediction | None, cls: str,
                 names: Mapping[str, str]) -> WorstError:
    failed = prediction is not None and prediction.error
    ranking = [] if prediction is None or failed else [
        RankedRow(rank=position, id=entity.id, name=entity.name or names.get(entity.id, ""), score=entity.score,
                  gold=entity.id == example.answer)
        for position, entity in enumerate(prediction.ranking[:RANKING_ROWS], start=1)]
    return WorstError(number=number, query_id=example.id, error_class=cls, mention=example.mention,
                      text=_clip(example.text) if example.text else None, gold_id=example.answer,
                      gold_name=names.get(example.answer, "?") if example.answer is not None else None,
                      gold_rank=gold_rank(prediction, example.answer),
                      error=_clip(prediction.error) if failed else None,
                      answered_nil=bool(prediction is not None and not failed and prediction.nil), ranking=ranking)


def _badness(item: tuple[LabeledQuery, Prediction | None, str]) -> tuple[float, int, float]:
    example, prediction, _ = item
    rank = gold_rank(prediction, example.answer)
    failed = prediction is None or prediction.error is not None
    top_score = prediction.ranking[0].score if prediction is not None and prediction.ranking else 0.0
    return (-(rank if rank is not None else float("inf")), int(failed), -top_score)


def _clip(text: str) -> str:
    return text if len(text) <= CLIP else text[: CLIP - 1] + "…"
