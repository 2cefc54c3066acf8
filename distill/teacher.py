"""Teacher annotation: retrieve candidates, ask the model to judge them, append one rationale record per example.

The teacher takes :class:`LinkQuery` objects (never :class:`LabeledQuery`): gold answers cannot reach the
prompt. Records are appended as each answer arrives, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from vplink.agent.llm_client import LLMClient, value_probability
from vplink.agent.llm_errors import LLMError, LLMUnavailableError
from vplink.core.errors import VplinkError
from vplink.core.jsonl import append_jsonl, read_completed_ids
from vplink.core.progress import tqdm
from vplink.core.records import Candidate, LabeledQuery, LinkQuery
from vplink.distill.rationales import CandidateView, NIL, RationaleRecord, TeacherAnswer
from vplink.prompts.loader import PromptTemplate, load_prompt
from vplink.retrieval.search import MultiViewRetriever, QueryViews

DESCRIPTION_CHARS = 120
RETRIEVAL_BATCH = 64


class AnnotationReport(BaseModel):
    """What one annotation run did and how fast."""

    out_path: str
    model: str
    prompt_version: str
    requested: int
    skipped_done: int
    annotated: int
    failed: int
    nil: int
    invalid_choice: int
    no_candidates: int = 0
    wall_s: float
    examples_per_min: float
    completion_tokens_per_s: float
    mean_completion_tokens: float
    concurrency: int
    errors: list[str] = Field(default_factory=list)


def candidate_listing(candidates: Sequence[Candidate], chars: int = DESCRIPTION_CHARS) -> str:
    """The prompt's candidate lines: ``- ID: name. description`` (the description trimmed)."""
    lines = []
    for cand in candidates:
        desc = (cand.entity.description if cand.entity else "").strip()
        if len(desc) > chars:
            desc = desc[: chars - 1].rstrip() + "…"
        lines.append(f"- {cand.id}: {cand.name}." + (f" {desc}" if desc else ""))
    return "\n".join(lines)


def render_judge(prompt: PromptTemplate, query: LinkQuery, candidates: Sequence[Candidate],
                 evidence: str = "none") -> list[dict[str, str]]:
    """The judge prompt's chat messages for one query and its candidates."""
    return prompt.render(caption=query.text or "(none)", mention=query.mention or "(none: the box is the mention)",
                         evidence=evidence or "none", candidates=candidate_listing(candidates))


def normalise_answer(answer: TeacherAnswer, shown: Sequence[str]) -> tuple[str, dict[str, float], list[str]]:
    """The choice (a shown id or NIL) and one score in [0, 1] for every shown id, with notes on what was fixed."""
    notes: list[str] = []
    choice = answer.choice.strip()
    if choice.upper() == NIL:
        choice = NIL
    elif choice not in shown:
        notes.append(f"choice {choice[:40]!r} is not a shown id: recorded as NIL")
        choice = NIL
    scores: dict[str, float] = {}
    for cid in shown:
        raw = answer.scores.get(cid)
        scores[cid] = min(max(float(raw), 0.0), 1.0) if raw is not None else 0.0
    dropped = [k for k in answer.scores if k not in shown]
    if dropped:
        notes.append(f"scores for {len(dropped)} unshown id(s) dropped")
    if len(answer.scores) - len(dropped) < len(shown):
        notes.append("missing scores filled with 0")
    if choice != NIL:
        top = max(scores.values())
        if scores[choice] < top or top == 0.0:
            # the choice is the teacher's decisive signal; its score must agree with it (1.0 when none was given)
            scores[choice] = top if top > 0.0 else 1.0
            notes.append("choice's score raised to the maximum")
    return choice, scores, notes


def _as_query(query: LinkQuery) -> LinkQuery:
    # a LabeledQuery carries the gold answer: drop it so nothing downstream can read it
    if isinstance(query, LabeledQuery) or type(query) is not LinkQuery:
        return LinkQuery(**query.model_dump(include=set(LinkQuery.model_fields)))
    return query


def retrieve_candidates(retriever: MultiViewRetriever, queries: Sequence[LinkQuery], k: int,
                        progress: bool = False) -> list[list[Candidate]]:
    """Top-k fused candidates of each query (mention and caption views), batched."""
    out: list[list[Candidate]] = []
    bar = tqdm(total=len(queries), desc="retrieve", unit="ex", disable=not progress)
    for start in range(0, len(queries), RETRIEVAL_BATCH):
        batch = queries[start:start + RETRIEVAL_BATCH]
        out += retriever.search_batch([QueryViews(mention=q.mention, context=q.text) for q in batch], k=k)
        bar.update(len(batch))
    bar.close()
    return out


def annotate(queries: list[LinkQuery], retriever: MultiViewRetriever, llm: LLMClient, out_path: str | Path, *,
             k: int = 10, concurrency: int = 8, limit: int | None = None, progress: bool = True,
             prompt: PromptTemplate | None = None, max_tokens: int = 160) -> AnnotationReport:
    """Annotate ``queries`` with the teacher's judgement of their top-k candidates; resumable, appends to out_path."""
    out_path = Path(out_path)
    prompt = prompt or load_prompt("judge")
    model = llm.check()  # fails fast (no server, a wrong URL, an unknown model) before any retrieval work
    queries = [_as_query(q) for q in (queries[:limit] if limit is not None else queries)]
    done = read_completed_ids(out_path)
    todo = [q for q in queries if q.id not in done]
    if len({q.id for q in todo}) != len(todo):
        raise VplinkError("annotate: query ids must be unique (they key the resumable output)")
    started = time.perf_counter()
    stats = {"annotated": 0, "failed": 0, "nil": 0, "invalid": 0, "tokens": 0, "no_candidates": 0}
    errors: list[str] = []

    async def run() -> None:
        sem = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()
        bar = tqdm(total=len(todo), desc=f"annotate ({model})", unit="ex", disable=not progress)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_path.open("a", encoding="utf-8") as handle:
            async def one(query: LinkQuery, cands: list[Candidate]) -> None:
                shown = [c.id for c in cands]
                messages = render_judge(prompt, query, cands)
                async with sem:
                    try:
                        answer, info = await llm.acomplete_structured(messages, TeacherAnswer, max_tokens=max_tokens,
                                                                      logprobs=True)
                    except LLMUnavailableError:
                        raise
                    except LLMError as exc:
                        stats["failed"] += 1
                        errors.append(f"{query.id}: {str(exc)[:200]}")
                        bar.update(1)
                        return
                choice, scores, notes = normalise_answer(answer, shown)
                record = RationaleRecord(
                    id=query.id, mention=query.mention, text=query.text, candidates=shown,
                    retrieval=[CandidateView(id=c.id, name=c.name, score=c.score,
                                             hits={ch: h.model_dump() for ch, h in c.hits.items()}) for c in cands],
                    choice=choice, rationale=answer.rationale.strip(), scores=scores, model=model,
                    prompt_version=prompt.version, seconds=round(info.seconds, 3),
                    prompt_tokens=info.prompt_tokens, completion_tokens=info.completion_tokens, notes=notes,
                    confidence=value_probability(info, "choice", answer.choice))
                append_jsonl(handle, record)
                stats["annotated"] += 1
                stats["nil"] += choice == NIL
                stats["invalid"] += any("not a shown id" in n for n in notes)
                stats["tokens"] += info.completion_tokens
                bar.update(1)

            pending: set[asyncio.Task] = set()
            try:
                # retrieval runs in a worker thread, a chunk at a time, so requests keep flowing meanwhile
                for start in range(0, len(todo), RETRIEVAL_BATCH):
                    chunk = todo[start:start + RETRIEVAL_BATCH]
                    found = await loop.run_in_executor(None, retrieve_candidates, retriever, chunk, k)
                    for query, cands in zip(chunk, found):
                        if not cands:
                            stats["no_candidates"] += 1
                            bar.update(1)
                            continue
                        pending.add(asyncio.create_task(one(query, cands)))
                    # keep retrieval only a little ahead of the model
                    while len(pending) > 2 * concurrency:
                        done_now, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                        for task in done_now:
                            task.result()  # re-raise LLMUnavailableError
                if pending:
                    for task in await asyncio.gather(*pending, return_exceptions=True):
                        if isinstance(task, BaseException):
                            raise task
            finally:
                for task in pending:
                    task.cancel()
                bar.close()
                await llm.aclose()

    if todo:
        asyncio.run(run())
    wall = time.perf_counter() - started
    llm_wall = max(wall, 1e-9)
    n = stats["annotated"]
    return AnnotationReport(
        out_path=str(out_path), model=model, prompt_version=prompt.version, requested=len(queries),
        skipped_done=len(queries) - len(todo), annotated=n, failed=stats["failed"], nil=stats["nil"],
        invalid_choice=stats["invalid"], no_candidates=stats["no_candidates"], wall_s=round(wall, 2),
        examples_per_min=round(n / llm_wall * 60, 3) if n else 0.0,
        completion_tokens_per_s=round(stats["tokens"] / llm_wall, 3) if n else 0.0,
        mean_completion_tokens=round(stats["tokens"] / n, 1) if n else 0.0, concurrency=concurrency,
        errors=errors[:20])


def candidate_records(queries: list[LinkQuery], retriever: MultiViewRetriever, out_path: str | Path, *, k: int = 10,
                      progress: bool = True) -> int:
    """Records of the retrieved candidates only (no teacher: choice NIL, model "none"), for gold-only training.

    Resumable like :func:`annotate`; returns the number of records written.
    """
    out_path = Path(out_path)
    done = read_completed_ids(out_path)
    todo = [_as_query(q) for q in queries if q.id not in done]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    bar = tqdm(total=len(todo), desc="candidates", unit="ex", disable=not progress)
    with out_path.open("a", encoding="utf-8") as handle:
        for start in range(0, len(todo), RETRIEVAL_BATCH):
            chunk = todo[start:start + RETRIEVAL_BATCH]
            for query, cands in zip(chunk, retrieve_candidates(retriever, chunk, k)):
                if cands:
                    append_jsonl(handle, RationaleRecord(
                        id=query.id, mention=query.mention, text=query.text, candidates=[c.id for c in cands],
                        retrieval=[CandidateView(id=c.id, name=c.name, score=c.score,
                                                 hits={ch: h.model_dump() for ch, h in c.hits.items()})
                                   for c in cands],
                        choice=NIL, scores={c.id: 0.0 for c in cands}, model="none", prompt_version="none",
                        notes=["retrieval only: no teacher judgement"]))
                    written += 1
            bar.update(len(chunk))
    bar.close()
    return written
