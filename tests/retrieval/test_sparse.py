"""BM25 encoder: analysis (stop words, stemming), stable term ids, BM25 term-frequency weights."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bookchat.retrieval.sparse import ENGLISH_STOP_WORDS, Bm25Encoder


@pytest.fixture
def encoder() -> Bm25Encoder:
    return Bm25Encoder()


def test_terms_are_lowercased_stemmed_and_stop_words_dropped(encoder: Bm25Encoder) -> None:
    assert encoder.terms("The Robots are RUNNING, and the robot runs!") == ["robot", "run", "robot", "run"]
    assert encoder.terms("the of and to") == []
    assert encoder.terms("configure load_settings() in COVID-19") == ["configur", "load_set", "covid", "19"]
    assert encoder.terms("x" * 41 + " kept") == ["kept"]  # over-long tokens are noise (hashes, base64)
    assert {"the", "a", "not"} <= ENGLISH_STOP_WORDS


def test_term_ids_are_stable_32_bit_murmur_hashes(encoder: Bm25Encoder) -> None:
    # Fixed values: ids written by one process (or version) must match queries of another.
    assert encoder.term_id("run") == 243905464
    assert encoder.term_id("gazebo") == 466784681
    other = subprocess.run(
        [sys.executable, "-c", "from bookchat.retrieval.sparse import Bm25Encoder; print(Bm25Encoder.term_id('run'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(other.stdout) == 243905464
    assert 0 <= encoder.term_id("anything at all") < 2**32


def test_a_query_has_weight_one_per_distinct_term(encoder: Bm25Encoder) -> None:
    vector = encoder.encode_query("robot robots ROBOT sensors")
    assert vector.indices == sorted({encoder.term_id("robot"), encoder.term_id("sensor")})
    assert vector.values == [1.0, 1.0]
    assert encoder.encode_query("the and of").indices == []


def test_document_weights_saturate_with_frequency_and_shrink_with_length(encoder: Bm25Encoder) -> None:
    def weight(text: str, term: str) -> float:
        vector = encoder.encode_documents([text])[0]
        return vector.values[vector.indices.index(encoder.term_id(term))]

    filler = " ".join(f"word{i}" for i in range(118))  # 120 terms: the average document length
    once, twice = weight(f"robot camera {filler}", "robot"), weight(f"robot robot {filler}", "robot")
    assert once == pytest.approx(1.0)  # tf=1 at average length: (k1 + 1) / (1 + k1)
    assert once < twice < 2 * once
    longer = weight(f"robot camera {filler} {filler}", "robot")
    assert longer < once


def test_document_vectors_are_sorted_and_unique(encoder: Bm25Encoder) -> None:
    (vector,) = encoder.encode_documents(["zebra apple zebra mango apple kiwi"])
    assert vector.indices == sorted(set(vector.indices))
    assert len(vector.indices) == len(vector.values) == 4
    assert encoder.encode_documents([]) == []
    assert encoder.encode_documents(["the of"])[0].indices == []


def test_the_signature_names_every_parameter() -> None:
    signatures = {
        Bm25Encoder().signature,
        Bm25Encoder(k1=1.5).signature,
        Bm25Encoder(b=0.5).signature,
        Bm25Encoder(avg_doc_length=200).signature,
        Bm25Encoder(stop_words={"the"}).signature,
    }
    assert len(signatures) == 5
    assert Bm25Encoder().signature == Bm25Encoder().signature
