"""History-aware first search of a turn: the message, the previous question and their fusion (model-free), and
optionally a model's standalone rewrite fused in."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

from bookchat.retrieval.query_script import in_other_script
from bookchat.retrieval.search import HybridRetriever, Passage, SearchFilters

FollowupMethod = Literal["alone", "concat", "fuse", "detect", "detect_fuse", "weighted_fuse", "detect_concat"]
FOLLOWUP_METHODS: tuple[FollowupMethod, ...] = get_args(FollowupMethod)
# The method the chat service should use; chosen on bench/data (docs/benchmarks.md, "Conversations and coverage").
DEFAULT_FOLLOWUP_METHOD: FollowupMethod = "detect_concat"
# Reciprocal rank fusion constant of `fuse_hits` (the usual 60: ranks matter, not raw scores).
FUSION_RRF_K = 60
# Weights (message alone, previous question + message) of `weighted_fuse`: a message the detector calls dependent
# leans on the conversation, a self-contained one on itself; the conversation list still votes in both, so a missed
# dependency is not lost. Picked as round numbers on bench/data (docs/benchmarks.md), not tuned finely.
DEPENDENT_WEIGHTS = (1.0, 2.0)
SELF_CONTAINED_WEIGHTS = (2.0, 1.0)
# How many previous user questions the conversation query takes (the last one is nearly always the antecedent).
HISTORY_QUESTIONS = 1
# Candidates fetched per list before fusion, at least.
FUSION_FETCH = 10
# A message of at most this many words is treated as dependent ("Any example?"); 4 would take in
# "What does robot_state_publisher do?".
SHORT_MESSAGE_WORDS = 3

_WORD = re.compile(r"[\w']+", re.UNICODE)
# Openings that continue the previous turn ("And ...", "What about ...", "Which one ...").
_CONTINUATION_OPENINGS = (
    ("and",),
    ("but",),
    ("also",),
    ("so",),
    ("ok", "and"),
    ("now",),
    ("then",),
    ("what", "about"),
    ("how", "about"),
    ("what", "if"),
    ("which", "one"),
    ("why", "not"),
    ("same",),
)
# Words that point back at something named earlier.
_ANAPHORA = frozenset(
    {"it", "its", "itself", "that", "this", "they", "them", "their", "those", "these", "one", "ones", "mine", "there"}
)
# A pronoun in a longer message usually has its antecedent in the message itself ("... so the node can use it").
_PRONOUN_LIMIT_WORDS = 12


@dataclass(frozen=True)
class FollowupSearch:
    """What a follow-up's search did: the queries run, their fusion weights, and whether it was judged dependent."""

    queries: tuple[str, ...]
    weights: tuple[float, ...]
    dependent: bool
    hits: list[Passage]
    rewritten: str | None = None  # the model's standalone query, when one was fused in

    @property
    def searched(self) -> str | None:
        """The query that best says what was searched: the rewrite, else the broadest model-free query."""
        return self.rewritten or (self.queries[-1] if self.queries else None)


def words(text: str) -> list[str]:
    """Lower-cased words of `text` (apostrophes kept: "what's", "doesn't")."""
    return _WORD.findall(text.lower())


def looks_dependent(message: str) -> bool:
    """Lexical guess that `message` leans on the previous turn: a continuation opening ("And their TF frames?"),
    a pronoun/demonstrative first ("It keeps failing..."), a very short message, or a pronoun/demonstrative in a
    message short enough not to hold its antecedent ("Can they be compressed too?")."""
    tokens = words(message)
    if not tokens:
        return False
    for opening in _CONTINUATION_OPENINGS:
        if tuple(tokens[: len(opening)]) == opening:
            return True
    if len(tokens) <= SHORT_MESSAGE_WORDS or tokens[0] in _ANAPHORA:
        return True
    return len(tokens) <= _PRONOUN_LIMIT_WORDS and any(token in _ANAPHORA for token in tokens)


def wants_rewrite(message: str, previous_questions: Sequence[str]) -> bool:
    """Whether a model rewrite may help the first search: a follow-up that leans on an earlier question, or a
    question written in another script than the book's (the rewrite then translates it). First turns and
    self-contained follow-ups in the book's script are searched as they are, with no model call."""
    if in_other_script(message):
        return True
    return bool(previous_questions) and looks_dependent(message)


def conversation_query(message: str, previous_questions: Sequence[str], history: int = HISTORY_QUESTIONS) -> str:
    """The previous user question(s), oldest first, then the message: one query that names the topic."""
    kept = [question.strip() for question in previous_questions[-history:] if question.strip()] if history else []
    return "\n".join([*kept, message.strip()])


def fuse_hits(lists: Sequence[Sequence[Passage]], weights: Sequence[float], limit: int) -> list[Passage]:
    """Weighted reciprocal rank fusion of hit lists by chunk id: score = Σ weight / (FUSION_RRF_K + rank)."""
    if len(lists) != len(weights):
        raise ValueError("one weight per hit list")
    scores: dict[str, float] = {}
    first: dict[str, Passage] = {}
    for hits, weight in zip(lists, weights, strict=True):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (FUSION_RRF_K + rank)
            first.setdefault(hit.chunk_id, hit)
    ranked = sorted(scores, key=lambda chunk_id: -scores[chunk_id])
    return [replace(first[chunk_id], score=scores[chunk_id]) for chunk_id in ranked[:limit]]


def interleave_hits(leading: Sequence[Passage], other: Sequence[Passage], limit: int) -> list[Passage]:
    """`leading`'s first hit, `other`'s first, `leading`'s second... without repeats, up to `limit`.

    How a rewrite joins the model-free hits: whatever the rewrite says, the model-free top passage stays first
    and its first half of the places stay in the list; a good rewrite fills the other half. Reciprocal rank
    fusion was measured too (bench/conversation.py, "rewrite"): two lists that agree on a wrong passage outvote
    the model-free first one, so a wrong rewrite lowered hit@1 by 0.03-0.10 there.
    """
    merged: list[Passage] = []
    seen: set[str] = set()
    for rank in range(max(len(leading), len(other))):
        for hits in (leading, other):
            if rank < len(hits) and hits[rank].chunk_id not in seen:
                seen.add(hits[rank].chunk_id)
                merged.append(hits[rank])
    return merged[:limit]


async def search_followup(
    retriever: HybridRetriever,
    message: str,
    previous_questions: Sequence[str],
    *,
    method: FollowupMethod = DEFAULT_FOLLOWUP_METHOD,
    limit: int = 6,
    filters: SearchFilters | None = None,
    rewrite: Awaitable[str | None] | None = None,
) -> FollowupSearch:
    """The first search of a turn: `message` alone on a first turn, else as `method` says; with `rewrite` (the
    model's standalone query, awaited while the model-free search runs) both are merged by `interleave_hits`,
    model-free first. A rewrite that is None, empty or one of the model-free queries changes nothing.

    - `alone`: the message only (what a first turn does);
    - `concat`: the previous question and the message as one query;
    - `fuse`: both searches, fused with equal weights;
    - `detect`: `concat` when `looks_dependent(message)`, else `alone`;
    - `detect_fuse`: `fuse` when dependent, else `alone`;
    - `weighted_fuse`: both searches, fused with DEPENDENT_WEIGHTS or SELF_CONTAINED_WEIGHTS by the detector;
    - `detect_concat` (default): `concat` when dependent, else both fused with SELF_CONTAINED_WEIGHTS, so a
      dependency the detector misses still gets the conversation's vote.
    """
    if method not in FOLLOWUP_METHODS:
        raise ValueError(f"unknown follow-up method {method!r}; expected one of {', '.join(FOLLOWUP_METHODS)}")
    if rewrite is None:
        return await _model_free(retriever, message, previous_questions, method, limit, filters)
    fetch = max(limit, FUSION_FETCH)
    found, rewritten = await asyncio.gather(
        _model_free(retriever, message, previous_questions, method, fetch, filters), rewrite
    )
    if not rewritten or not rewritten.strip() or rewritten.strip() in found.queries:
        return replace(found, hits=found.hits[:limit])
    query = rewritten.strip()
    extra = await retriever.search(query, limit=fetch, filters=filters)
    return replace(found, hits=interleave_hits(found.hits, extra, limit), rewritten=query)


async def _model_free(
    retriever: HybridRetriever,
    message: str,
    previous_questions: Sequence[str],
    method: FollowupMethod,
    limit: int,
    filters: SearchFilters | None,
) -> FollowupSearch:
    context = conversation_query(message, previous_questions)
    dependent = looks_dependent(message)
    if context == message.strip() or method == "alone":
        return await _single(retriever, message, dependent, limit, filters)
    if method == "concat" or (method in ("detect", "detect_concat") and dependent):
        return await _single(retriever, context, dependent, limit, filters)
    if method in ("detect", "detect_fuse") and not dependent:
        return await _single(retriever, message, dependent, limit, filters)
    if method == "detect_concat":
        weights = SELF_CONTAINED_WEIGHTS
    elif method == "weighted_fuse":
        weights = DEPENDENT_WEIGHTS if dependent else SELF_CONTAINED_WEIGHTS
    else:
        weights = (1.0, 1.0)
    fetch = max(limit, FUSION_FETCH)
    alone, joined = await asyncio.gather(
        retriever.search(message, limit=fetch, filters=filters),
        retriever.search(context, limit=fetch, filters=filters),
    )
    return FollowupSearch((message, context), weights, dependent, fuse_hits([alone, joined], weights, limit))


async def _single(
    retriever: HybridRetriever, query: str, dependent: bool, limit: int, filters: SearchFilters | None
) -> FollowupSearch:
    hits = await retriever.search(query, limit=limit, filters=filters)
    return FollowupSearch((query,), (1.0,), dependent, hits)
