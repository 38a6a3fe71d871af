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

MAX_SENTENCES = 4
MAX_SENTENCE_CHARS = 400

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
    """Markdown reduced to plain sentences: no code blocks, headings, tables or link targets."""
    text = _FENCE.sub(" ", text)
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "|", "<", "import ", "export ")):
            lines.append("")
            continue
        line = re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", line)  # list markers
        lines.append(line)
    text = "\n".join(lines)
    text = _LINK.sub(r"\1", text)
    text = re.sub(r"[*_]{1,3}([^*_]+)[*_]{1,3}", r"\1", text)
    return text.replace("`", "")


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
    """An answer quoting the best sentences of `passages` (in rank order), each cited `[n]` (1-based).

    Sentences are scored by the question's terms they contain (rarer terms weigh more) with a
    preference for higher-ranked passages; the chosen ones are listed in passage order. The first
    line says that no language model is configured.
    """
    sentences = [sentence for number, text in enumerate(passages, 1) for sentence in split_sentences(number, text)]
    if not sentences:
        return NOTHING_FOUND if not selection else NO_LLM_SELECTION_LINE + "\n\n(The selection has no full sentence.)"
    query = {_stem(term) for term in _terms(question)}
    document_frequency: dict[str, int] = {}
    sentence_terms = []
    for sentence in sentences:
        terms = {_stem(term) for term in _terms(sentence.text)}
        sentence_terms.append(terms)
        for term in terms & query:
            document_frequency[term] = document_frequency.get(term, 0) + 1
    total = len(sentences)

    def score(index: int) -> float:
        sentence = sentences[index]
        overlap = sentence_terms[index] & query
        relevance = sum(math.log(1 + total / document_frequency[term]) for term in overlap)
        rank_prior = 1.0 / (1 + 0.3 * (sentence.passage - 1))
        early = 1.0 / (1 + 0.05 * sentence.position)
        return relevance * rank_prior + 0.01 * rank_prior * early

    ranked = sorted(range(total), key=score, reverse=True)
    chosen = [index for index in ranked if sentence_terms[index] & query][:MAX_SENTENCES]
    if not chosen:  # nothing matches the words: the opening sentences of the best passages
        firsts: dict[int, int] = {}
        for index, sentence in enumerate(sentences):
            firsts.setdefault(sentence.passage, index)
        chosen = list(firsts.values())[:2]
    chosen.sort(key=lambda index: (sentences[index].passage, sentences[index].position))
    lines = [f"- {sentences[index].text} [{sentences[index].passage}]" for index in chosen]
    header = NO_LLM_SELECTION_LINE if selection else NO_LLM_LINE
    return header + "\n\n" + "\n".join(lines)
