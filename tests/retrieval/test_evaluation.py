"""BEIR evaluation: metric formulas checked by hand, and a whole run on a tiny hand-made BEIR folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bookchat.config import Settings
from bookchat.retrieval.embeddings import OnnxEmbedder
from bookchat.retrieval.evaluation import (
    BeirError,
    eval_collection_name,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    recall_at_k,
    render_eval_table,
    run_beir_eval,
    score_run,
)

CORPUS = [
    {"_id": "d1", "title": "Vitamin D", "text": "Vitamin D supplementation reduces fractures in elderly patients."},
    {"_id": "d2", "title": "Aspirin", "text": "Aspirin lowers the risk of heart attacks."},
    {"_id": "d3", "title": "Sleep", "text": "Sleep deprivation impairs memory consolidation."},
    {"_id": "d4", "title": "Exercise", "text": "Regular exercise improves cardiovascular health."},
    {"_id": "d5", "title": "Coffee", "text": "Coffee consumption is associated with alertness."},
]
QUERIES = [
    {"_id": "q1", "text": "vitamin D fractures elderly"},
    {"_id": "q2", "text": "aspirin heart attack risk"},
    {"_id": "q3", "text": "sleep memory"},
    {"_id": "q4", "text": "a query nobody judged"},
]
# q2: d2 is highly relevant (2), d4 somewhat (1) but shares no word with the query.
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td4\t1\nq3\td3\t1\nq9\td1\t1\n"


def write_beir(folder: Path, qrels: str = QRELS) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in QUERIES))
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


# ------------------------------------------------------------------------------------------- metrics


def test_ndcg_uses_graded_gains_and_the_ideal_order() -> None:
    relevant = {"a": 1, "b": 2}
    # DCG = 0 + 1/log2(3) + 2/log2(4); IDCG = 2/log2(2) + 1/log2(3)
    expected = (1 / math.log2(3) + 1) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "b"], relevant) == pytest.approx(expected)
    assert expected == pytest.approx(0.6199, abs=1e-4)
    assert ndcg_at_k(["b", "a"], relevant) == pytest.approx(1.0)
    assert ndcg_at_k(["x"] * 10 + ["b"], relevant) == 0.0  # beyond the cutoff
    assert ndcg_at_k([], relevant) == 0.0
    assert ndcg_at_k(["a"], {"a": 0}) == 0.0


def test_recall_and_mrr() -> None:
    relevant = {"a": 1, "b": 1, "c": 0}
    assert recall_at_k(["x", "a", "c"], relevant, 10) == 0.5
    assert recall_at_k(["x", "a", "b"], relevant, 2) == 0.5
    assert recall_at_k(["a"], {"c": 0}, 10) == 0.0
    assert mrr_at_k(["x", "c", "b", "a"], relevant) == pytest.approx(1 / 3)
    assert mrr_at_k(["x"] * 10 + ["a"], relevant) == 0.0


def test_score_run_averages_over_judged_queries_and_counts_missing_runs_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    scores = score_run({"q1": ["a"]}, qrels)
    assert scores == {"ndcg@10": 0.5, "recall@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5}


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)


# ------------------------------------------------------------------------------------------- BEIR folder


def test_load_beir_keeps_judged_queries_only(tmp_path: Path) -> None:
    dataset = load_beir(write_beir(tmp_path / "tiny"))
    assert dataset.name == "tiny"
    assert [doc_id for doc_id, _, _ in dataset.corpus] == ["d1", "d2", "d3", "d4", "d5"]
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d4": 1}, "q3": {"d3": 1}}  # q9 has no query text


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1 d1 1\n", "separated by tabs"),
        ("q1\td1\tvery\n", "not an integer"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t0\n", "judges no query"),
    ],
)
def test_broken_beir_folders_are_named(tmp_path: Path, qrels: str, message: str) -> None:
    with pytest.raises(BeirError, match=message):
        load_beir(write_beir(tmp_path / "broken", qrels))


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(BeirError, match=r"corpus\.jsonl is missing"):
        load_beir(tmp_path)
    folder = write_beir(tmp_path / "x")
    with pytest.raises(BeirError, match=r"qrels/dev\.tsv"):
        load_beir(folder, "dev")
    (folder / "corpus.jsonl").write_text('{"_id": "d1"}\nnot json\n')
    with pytest.raises(BeirError, match=r"corpus\.jsonl:2"):
        load_beir(folder)


# ------------------------------------------------------------------------------------------- a whole run


async def test_a_whole_run_scores_every_mode_and_reuses_its_collection(tmp_path: Path, embedder: OnnxEmbedder) -> None:
    folder = write_beir(tmp_path / "tiny")
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    output = tmp_path / "results" / "eval.json"
    progress: list[tuple[int, int]] = []
    first = await run_beir_eval(
        settings, folder, embedder=embedder, output=output, progress=lambda done, total: progress.append((done, total))
    )
    assert progress == [(5, 5)]
    assert first["indexed_now"] is True
    assert first["collection"] == eval_collection_name(settings, "tiny", embedder.model_id)
    assert first["collection"].startswith("bookchat-beir-tiny-sentence-transformers-all-minilm")
    assert (first["queries"], first["corpus_documents"]) == (3, 5)
    assert json.loads(output.read_text()) == first

    # BM25 by hand: q1 and q3 find their one document first; q2 finds d2 (gain 2) first but never d4, which
    # shares no word with it: nDCG = 2 / (2 + 1/log2(3)), recall 1/2.
    q2_ndcg = 2 / (2 + 1 / math.log2(3))
    bm25 = first["modes"]["bm25"]
    assert bm25["ndcg@10"] == pytest.approx((1 + q2_ndcg + 1) / 3, abs=1e-4)
    assert bm25["recall@10"] == bm25["recall@100"] == pytest.approx((1 + 0.5 + 1) / 3, abs=1e-4)
    assert bm25["mrr@10"] == 1.0
    for mode in ("dense", "hybrid"):
        scores: dict[str, Any] = first["modes"][mode]
        assert scores["recall@100"] == 1.0  # every document comes back from a 5-document corpus
        assert scores["mrr@10"] == 1.0
        assert scores["ndcg@10"] > q2_ndcg
        assert 0 < scores["latency_ms_p50"] <= scores["latency_ms_p95"]

    again = await run_beir_eval(settings, folder, modes=("bm25",), embedder=embedder)
    assert again["indexed_now"] is False
    assert list(again["modes"]) == ["bm25"]
    assert again["modes"]["bm25"]["ndcg@10"] == bm25["ndcg@10"]

    console = Console(width=160, record=True)
    console.print(render_eval_table(first))
    text = console.export_text()
    assert "tiny (test, 3 queries)" in text
    assert all(mode in text for mode in ("hybrid", "dense", "bm25"))
    assert f"{bm25['ndcg@10']:.4f}" in text


async def test_unknown_modes_are_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    with pytest.raises(ValueError, match="unknown search mode"):
        await run_beir_eval(settings, tmp_path, modes=("fuzzy",))  # type: ignore[arg-type]
