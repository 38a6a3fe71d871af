"""Choose the similarity threshold that groups unanswered questions into gaps: paraphrases vs other questions.

Embeds the development questions with the bundled embedder and prints, per threshold, the share of paraphrase
pairs (bench/data/paraphrases.jsonl) that would be merged and the share of other pairs that would be merged by
mistake: unrelated questions (every pair of different development questions) and same-topic questions (a
follow-up's first question and its standalone rewrite, bench/data/followups.jsonl, which ask different things).

    PYTHONPATH=src python bench/gap_threshold.py
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np

from bookchat.config import Settings
from bookchat.retrieval.embeddings import create_embedder

DATA = Path(__file__).with_name("data")
RESULTS = Path(__file__).with_name("results")
THRESHOLDS = [round(0.50 + 0.025 * step, 3) for step in range(17)]


def lines(name: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


async def embed(texts: list[str]) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder), _env_file=None)  # type: ignore[call-arg]
        embedder = create_embedder(settings)
        return np.asarray(await embedder.embed_documents(texts), dtype=np.float32)


def main() -> None:
    paraphrases = lines("paraphrases.jsonl")
    followups = lines("followups.jsonl")
    singles = [row["question"] for row in lines("covered.jsonl") + lines("uncovered.jsonl")]
    texts = sorted(
        {row[key] for row in paraphrases for key in ("a", "b")}
        | {row[key] for row in followups for key in ("first", "second_standalone")}
        | set(singles)
    )
    vectors = asyncio.run(embed(texts))
    index = {text: i for i, text in enumerate(texts)}

    def cosine(a: str, b: str) -> float:
        return float(vectors[index[a]] @ vectors[index[b]])

    positive = np.array([cosine(row["a"], row["b"]) for row in paraphrases])
    same_topic = np.array([cosine(row["first"], row["second_standalone"]) for row in followups])
    unrelated = np.array([cosine(a, b) for a, b in itertools.combinations(sorted(set(singles)), 2)])
    print(f"pairs: {len(positive)} paraphrase, {len(same_topic)} same-topic, {len(unrelated)} unrelated")
    print(
        f"cosine median: paraphrase {np.median(positive):.3f}, same-topic {np.median(same_topic):.3f},"
        f" unrelated {np.median(unrelated):.3f}"
    )
    print(f"{'threshold':>9} {'paraphrases merged':>19} {'same-topic merged':>18} {'unrelated merged':>17} {'J':>6}")
    rows = []
    for threshold in THRESHOLDS:
        recall = float(np.mean(positive >= threshold))
        topic = float(np.mean(same_topic >= threshold))
        noise = float(np.mean(unrelated >= threshold))
        # Youden's J against the harder negatives: merged paraphrases minus merged same-topic questions.
        score = recall - topic
        rows.append({"threshold": threshold, "recall": recall, "same_topic": topic, "unrelated": noise, "j": score})
        print(f"{threshold:>9.3f} {recall:>19.1%} {topic:>18.1%} {noise:>17.2%} {score:>6.3f}")
    best = max(rows, key=lambda row: (row["j"], row["threshold"]))
    print(f"best threshold (max J, ties to the stricter): {best['threshold']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gap_threshold.json").write_text(json.dumps({"rows": rows, "best": best}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
