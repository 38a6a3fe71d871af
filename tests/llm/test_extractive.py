"""The extractive answer: best sentences of the best passages, each cited, with an honest first line."""

from __future__ import annotations

import re

from bookchat.llm.extractive import (
    MAX_SENTENCES,
    NO_LLM_LINE,
    NO_LLM_SELECTION_LINE,
    NOTHING_FOUND,
    extractive_answer,
    split_sentences,
)

PASSAGES = [
    "# Sensors\n\nGazebo simulates a lidar by casting rays from the sensor. The noise model is Gaussian. "
    'Cameras are simulated with OpenGL rendering of the scene.\n\n```xml\n<sensor type="ray"/>\n```',
    "URDF describes links and joints. A joint connects a parent link to a child link.",
    "Topics carry messages between nodes. The lidar driver publishes scans on a topic.",
]


def test_first_line_and_citations() -> None:
    answer = extractive_answer("How is a lidar simulated?", PASSAGES)
    lines = answer.splitlines()
    assert lines[0] == NO_LLM_LINE
    body = [line for line in lines[2:] if line]
    assert 1 <= len(body) <= MAX_SENTENCES
    assert all(re.search(r" \[\d\]$", line) for line in body)
    assert body[0] == "- Gazebo simulates a lidar by casting rays from the sensor. [1]"
    # Half as relevant and from the third passage: below RELATIVE_CUTOFF of the best, so not quoted.
    assert "- The lidar driver publishes scans on a topic. [3]" not in body
    assert "<sensor" not in answer  # code blocks are not prose


def test_sentences_are_judged_by_their_own_words_best_first() -> None:
    passages = [
        "Deleting the model folder frees disk space. Models are stored in the cache.",
        "Deleted files go to the trash folder. They stay there for thirty days before they are removed.",
    ]
    answer = extractive_answer("What happens to files I deleted?", passages)
    body = answer.splitlines()[2:]
    assert body[0] == "- Deleted files go to the trash folder. [2]"  # the second passage, but the best sentence
    assert body[1] == "- They stay there for thirty days before they are removed. [2]"  # its continuation
    assert not any("Models are stored" in line for line in body)  # shares no word with the question


def test_identifiers_keep_their_underscores_and_list_items_stay_apart() -> None:
    text = (
        "Set gpu_ray and raytrace_range in the plugin, and *emphasis* or _this_ goes.\n\n"
        "- [ ] I can write a launch file.\n- [x] I understand obstacle_persistence settings."
    )
    sentences = [sentence.text for sentence in split_sentences(1, text)]
    assert sentences == [
        "Set gpu_ray and raytrace_range in the plugin, and emphasis or this goes.",
        "I can write a launch file.",
        "I understand obstacle_persistence settings.",
    ]


def test_no_matching_words_falls_back_to_opening_sentences() -> None:
    answer = extractive_answer("Quantum chromodynamics?", PASSAGES)
    assert "[1]" in answer
    assert "[2]" in answer


def test_nothing_to_quote() -> None:
    assert extractive_answer("anything", []) == NOTHING_FOUND
    assert extractive_answer("anything", ["short"]) == NOTHING_FOUND
    assert extractive_answer("x", ["tiny"], selection=True).startswith(NO_LLM_SELECTION_LINE)


def test_selection_header() -> None:
    answer = extractive_answer("How many joints?", ["The arm has six joints and two grippers."], selection=True)
    assert answer.splitlines()[0] == NO_LLM_SELECTION_LINE
    assert answer.endswith("[1]")


def test_markdown_is_reduced_to_sentences() -> None:
    text = "- **Bold** item with [a link](https://x.org) inside it.\n| table | row |\n" + "word " * 120 + "end."
    sentences = split_sentences(1, text)
    assert sentences[0].text == "Bold item with a link inside it."
    assert all("|" not in s.text for s in sentences)
    assert sentences[-1].text.endswith("…")
