"""The answer without a language model: the passages' sentences that best match the question, each cited."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bookchat.text import shorten

NO_LLM_LINE = "No language model is configured, so this answer quotes the most relevant passages of the book."
NO_LLM_SELECTION_LINE = (
    "No language model is configured, so this answer quotes the sentences of your selection that best "
    "match the question."
)
NOTHING_FOUND = "No language model is configured, and no passage of the book matches this question."

# Chosen on bench/data/extractive.jsonl (bench/extractive.py; the grid and figures in docs/benchmarks.md): a lower
# cutoff only lengthened answers, a higher one or fewer sentences lost the right page or the gold words.
# At most this many sentences are quoted; a continuation ("It floods the network...") rides with its sentence.
MAX_SENTENCES = 4
MAX_SENTENCE_CHARS = 400
# A sentence is quoted only when its own relevance is at least this share of the best sentence's: an answer ends
# where the question's topic ends, not at MAX_SENTENCES.
RELATIVE_CUTOFF = 0.4
# How much a passage's rank still counts (score / (1 + RANK_DECAY * (rank - 1))): a sentence is judged by its own
# words first; the search's order breaks near-ties.
RANK_DECAY = 0.3
# Sentences that continue the one before them: their subject is a pronoun pointing back.
_CONTINUATION = re.compile(r"^(?:It|This|That|These|Those|They|Such|Its|Their)\b")

_STOPWORDS = frozenset(
    re.split(
        r"\s+",
        """a about above after again all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her
    here hers him his how i if in into is it its itself just me more most my no nor not now of off on once only
    or other our ours out over own same she should so some such than that the their theirs them then there
    these they this those through to too under until up very was we were what when where which while who whom
    why will with would you your yours explain tell describe please book chapter section""",
    )
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
# A list item's marker, with a task-list box ("- [ ] ", "1. [x] ") if it has one.
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?")
_STAR_EMPHASIS = re.compile(r"\*{1,3}([^*\n]+?)\*{1,3}")
# `_word_` emphasis only at word edges, so gpu_ray and robot_state_publisher keep their underscores.
_UNDERSCORE_EMPHASIS = re.compile(r"(?<!\w)_{1,2}([^_\n]+?)_{1,2}(?!\w)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9À-Ý])")


@dataclass(frozen=True)
class Sentence:
    passage: int  # 1-based passage number
    position: int  # order inside the passage
    text: str


def _terms(text: str) -> list[str]:
    return [word for word in (w.lower() for w in _WORD.findall(text)) if len(word) > 1 and word not in _STOPWORDS]


def _stem(word: str) -> str:
    # Crude suffix folding so "sensors"/"sensor" and "configured"/"configure" match; good enough for ranking.
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _prose(text: str) -> str:
    """Markdown reduced to plain sentences: no code blocks, headings, tables or link targets; each list item is a
    paragraph of its own (items are not one sentence); emphasis marks go, identifiers' underscores stay."""
    text = _FENCE.sub(" ", text)
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "|", "<", "import ", "export ")):
            lines.append("")
            continue
        if _LIST_ITEM.match(line):
            lines.append("")  # an item starts a paragraph
            line = _LIST_ITEM.sub("", line)
        lines.append(line)
    text = "\n".join(lines)
    text = _LINK.sub(r"\1", text)
    text = _STAR_EMPHASIS.sub(r"\1", text)
    text = _UNDERSCORE_EMPHASIS.sub(r"\1", text)
    return text.replace("`", "").replace("**", "")


def split_sentences(passage_number: int, text: str) -> list[Sentence]:
    sentences: list[Sentence] = []
    for block in re.split(r"\n\s*\n", _prose(text)):
        block = " ".join(block.split())
        for piece in _SENTENCE_END.split(block):
            piece = piece.strip()
            if len(piece) < 20:
                continue
            sentences.append(Sentence(passage_number, len(sentences), shorten(piece, MAX_SENTENCE_CHARS)))
    return sentences


def extractive_answer(question: str, passages: Sequence[str], *, selection: bool = False) -> str:
    """An answer quoting the sentences of `passages` (in rank order) that best match the question, each cited
    `[n]` (1-based), the best first.

    A sentence is scored by its own words: the share of the question's terms it holds, rarer terms (over all
    the sentences) weighing more, with a light preference for higher-ranked passages. Sentences below
    RELATIVE_CUTOFF of the best are dropped, at most MAX_SENTENCES are kept, and a sentence continuing a chosen
    one ("It ...", "This ...") comes with it. The first line says that no language model is configured.
    """
    sentences = [sentence for number, text in enumerate(passages, 1) for sentence in split_sentences(number, text)]
    if not sentences:
        return NOTHING_FOUND if not selection else NO_LLM_SELECTION_LINE + "\n\n(The selection has no full sentence.)"
    query = {_stem(term) for term in _terms(question)}
    sentence_terms = [{_stem(term) for term in _terms(sentence.text)} for sentence in sentences]
    document_frequency: dict[str, int] = {}
    for terms in sentence_terms:
        for term in terms & query:
            document_frequency[term] = document_frequency.get(term, 0) + 1
    total = len(sentences)
    weight = {term: math.log(1 + total / document_frequency.get(term, 1)) for term in query}
    query_weight = sum(weight.values()) or 1.0

    def score(index: int) -> float:
        relevance = sum(weight[term] for term in sentence_terms[index] & query) / query_weight
        return relevance / (1 + RANK_DECAY * (sentences[index].passage - 1))

    scores = [score(index) for index in range(total)]
    best = max(scores)
    if best <= 0:  # nothing matches the words: the opening sentences of the best passages
        firsts: dict[int, int] = {}
        for index, sentence in enumerate(sentences):
            firsts.setdefault(sentence.passage, index)
        chosen = list(firsts.values())[:2]
    else:
        ranked = sorted(range(total), key=lambda index: (-scores[index], index))
        chosen = [index for index in ranked if scores[index] >= RELATIVE_CUTOFF * best][:MAX_SENTENCES]
    lines: list[str] = []
    quoted: set[int] = set()
    for index in chosen:
        for part in (index, *_continuations(sentences, index)):
            if part not in quoted:
                quoted.add(part)
                lines.append(f"- {sentences[part].text} [{sentences[part].passage}]")
    header = NO_LLM_SELECTION_LINE if selection else NO_LLM_LINE
    return header + "\n\n" + "\n".join(lines)


def _continuations(sentences: Sequence[Sentence], index: int) -> list[int]:
    """The sentence right after `index` in the same passage when it continues it (a pronoun subject)."""
    following = index + 1
    if (
        following < len(sentences)
        and sentences[following].passage == sentences[index].passage
        and _CONTINUATION.match(sentences[following].text)
    ):
        return [following]
    return []
