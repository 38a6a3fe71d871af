"""Extractive answers (no language model): do the quoted sentences answer the question, from the right page?

    .venv/bin/python bench/extractive.py [--book ../shared/data/book-physical-ai-amnarehmani] [--limit N] [--dump]
                                         [--output FILE]

Chunks the shared textbook into a throw-away local Qdrant collection exactly as bench/conversation.py does
(`build_index`), then for each question of bench/data/extractive.jsonl runs the chat service's first search
(`HybridRetriever.search` with the default `search_limit`) and `extractive_answer(question, passages)`, the
answer bookchat gives when no language model is configured. The data is checked first: every `answer` and
`sentence` must be a verbatim substring of one of the row's `files`, or the run stops.

The answer's *body* is its `- sentence [n]` lines (the fixed first line saying no model is configured is left
out, and so are the `[n]` markers). Per question:

- right file cited: some `[n]` of the answer points at a passage whose document is one of `files`;
- file retrieved: some passage of the search is from one of `files` (the ceiling for the line above);
- gold answer words: every content word of the gold `answer` occurs as a word in the body. Words are runs of
  `[a-z0-9]` after lower-casing (so punctuation and markup split or vanish: "1-10Hz" is "1", "10hz"); content
  words are those not in ANSWER_STOPWORDS (when none is left, all words count). No stemming, no fuzzy match;
- gold sentence: the body contains the gold `sentence` with `*` and backticks removed, whitespace collapsed,
  compared case-insensitively (a gold sentence the answer split or shortened does not count);
- sentences: number of `- ... [n]` lines; characters: length of the body (lines and markers, no first line);
- off-topic sentences: lines citing a passage that is not from `files`.

Rates are shares of the questions; sentences, characters and off-topic sentences are means per question.
Results, with every question's answer, go to bench/results/extractive-<time>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bookchat.config import load_settings
from bookchat.llm.extractive import extractive_answer
from bookchat.retrieval.evaluation import machine_description
from bookchat.retrieval.search import HybridRetriever
from conversation import DEFAULT_BOOK, build_index, load
from record import results_path, write_results

# Words a gold answer may contain that carry no content of their own.
ANSWER_STOPWORDS = frozenset(
    "a an the of to in on at for from by with as and or is are be it its this that".split()  # noqa: SIM905
)
MAX_SENTENCE_CHARS = 300
MAX_ANSWER_WORDS = 8
_LINE = re.compile(r"^- (?P<text>.*) \[(?P<n>\d+)\]$")
_WORD = re.compile(r"[a-z0-9]+")
Row = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """One question's answer and what it scores."""

    id: str
    question: str
    answer: str
    cited_files: list[str]
    right_file_cited: bool
    file_retrieved: bool
    gold_answer_words: bool
    gold_sentence: bool
    sentences: int
    characters: int
    off_topic_sentences: int


def check_rows(rows: Sequence[Row], book: Path) -> None:
    """Stop the run when a row is malformed or its gold `answer`/`sentence` is not verbatim in its files."""
    problems: list[str] = []
    if len({row["id"] for row in rows}) != len(rows):
        problems.append("duplicate ids")
    for row in rows:
        texts = []
        for path in row["files"]:
            file = book / path
            if not file.is_file():
                problems.append(f"{row['id']}: no such file {path}")
                continue
            texts.append(file.read_text(encoding="utf-8"))
        for field in ("answer", "sentence"):
            if not any(row[field] in text for text in texts):
                problems.append(f"{row['id']}: {field} is not verbatim in {row['files']}: {row[field]!r}")
        if row["answer"] not in row["sentence"]:
            problems.append(f"{row['id']}: answer is not inside sentence")
        if len(row["sentence"]) > MAX_SENTENCE_CHARS:
            problems.append(f"{row['id']}: sentence is over {MAX_SENTENCE_CHARS} characters")
        if not 1 <= len(row["answer"].split()) <= MAX_ANSWER_WORDS:
            problems.append(f"{row['id']}: answer is not 1-{MAX_ANSWER_WORDS} words")
    if problems:
        raise SystemExit("bench/data/extractive.jsonl is wrong:\n  " + "\n  ".join(problems))


def answer_lines(answer: str) -> list[tuple[str, int]]:
    """The (sentence, cited passage number) of each `- sentence [n]` line of an extractive answer."""
    lines = []
    for line in answer.splitlines():
        match = _LINE.match(line.strip())
        if match:
            lines.append((match["text"], int(match["n"])))
    return lines


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_words(answer: str) -> set[str]:
    every = words(answer)
    return {word for word in every if word not in ANSWER_STOPWORDS} or set(every)


def sentence_key(text: str) -> str:
    """`text` without emphasis stars and backticks, whitespace collapsed, case folded."""
    return " ".join(text.replace("*", "").replace("`", "").split()).casefold()


def score_answer(row: Row, answer: str, sources: Sequence[str], prefix: str) -> Outcome:
    """Score `answer` to `row`'s question; `sources` are the searched passages' documents, in rank order."""
    wanted = {prefix + path for path in row["files"]}
    lines = answer_lines(answer)
    cited = [sources[n - 1] if 1 <= n <= len(sources) else "?" for _, n in lines]
    body = "\n".join(line for line in answer.splitlines() if _LINE.match(line.strip()))
    text = " ".join(sentence for sentence, _ in lines)
    return Outcome(
        id=row["id"],
        question=row["question"],
        answer=answer,
        cited_files=[source.removeprefix(prefix) for source in cited],
        right_file_cited=any(source in wanted for source in cited),
        file_retrieved=any(source in wanted for source in sources),
        gold_answer_words=content_words(row["answer"]) <= set(words(text)),
        gold_sentence=sentence_key(row["sentence"]) in sentence_key(text),
        sentences=len(lines),
        characters=len(body),
        off_topic_sentences=sum(source not in wanted for source in cited),
    )


def summarise(outcomes: Sequence[Outcome]) -> dict[str, float]:
    n = len(outcomes) or 1
    return {
        "right_file_cited": round(sum(o.right_file_cited for o in outcomes) / n, 3),
        "file_retrieved": round(sum(o.file_retrieved for o in outcomes) / n, 3),
        "gold_answer_words": round(sum(o.gold_answer_words for o in outcomes) / n, 3),
        "gold_sentence": round(sum(o.gold_sentence for o in outcomes) / n, 3),
        "sentences_mean": round(sum(o.sentences for o in outcomes) / n, 2),
        "characters_mean": round(sum(o.characters for o in outcomes) / n, 1),
        "off_topic_sentences_mean": round(sum(o.off_topic_sentences for o in outcomes) / n, 2),
    }


async def answer_all(retriever: HybridRetriever, rows: Sequence[Row], prefix: str, limit: int) -> list[Outcome]:
    outcomes = []
    for row in rows:
        passages = await retriever.search(row["question"], limit=limit)
        answer = extractive_answer(row["question"], [passage.text for passage in passages])
        outcomes.append(score_answer(row, answer, [passage.source_path for passage in passages], prefix))
    return outcomes


async def run(book: Path, folder: Path, rows: Sequence[Row]) -> tuple[dict[str, Any], list[Outcome]]:
    search_limit = load_settings().search_limit
    retriever, chunks, index_seconds = await build_index(book, folder)
    try:
        outcomes = await answer_all(retriever, rows, book.name + "/", search_limit)
    finally:
        await retriever.store.close()
    results: dict[str, Any] = {
        "book": book.name,
        "chunks": chunks,
        "index_seconds": round(index_seconds, 1),
        "machine": machine_description(),
        "search_limit": search_limit,
        "questions": len(rows),
        "figures": summarise(outcomes),
        "answers": [asdict(outcome) for outcome in outcomes],
    }
    return results, outcomes


def render(results: dict[str, Any]) -> Table:
    table = Table(
        title=f"Extractive answers on {results['book']}: {results['questions']} questions, "
        f"top {results['search_limit']} passages"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in results["figures"].items():
        table.add_row(name.replace("_", " "), f"{value}")
    return table


def dump(console: Console, outcomes: Sequence[Outcome], rows: Sequence[Row]) -> None:
    for outcome, row in zip(outcomes, rows, strict=True):
        marks = "".join(
            mark if flag else "."
            for mark, flag in (
                ("F", outcome.right_file_cited),
                ("W", outcome.gold_answer_words),
                ("S", outcome.gold_sentence),
            )
        )
        console.print(
            f"\n[{marks}] {row['id']} {row['question']}  (gold: {row['answer']!r} in {row['files']})",
            markup=False,
            soft_wrap=True,
        )
        console.print(f"cited: {outcome.cited_files}", markup=False, soft_wrap=True)
        console.print(outcome.answer, markup=False, soft_wrap=True)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--book", type=Path, default=DEFAULT_BOOK, help="book folder (default: %(default)s)")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--dump", action="store_true", help="print every question's answer")
    parser.add_argument("--output", type=Path, help="JSON file (default: bench/results/extractive-<time>.json)")
    args = parser.parse_args(argv)
    book = args.book.resolve()
    rows = load("extractive")
    check_rows(rows, book)
    if args.limit is not None:
        rows = rows[: max(args.limit, 0)]
    console = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="bookchat-extractive-") as folder:
        results, outcomes = await run(book, Path(folder), rows)
    output = write_results(results, args.output or results_path("extractive"))
    if args.dump:
        dump(console, outcomes, rows)
    console.print(render(results))
    console.print(
        f"{results['chunks']} chunks indexed in {results['index_seconds']} s; written to {output}",
        markup=False,
        soft_wrap=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
