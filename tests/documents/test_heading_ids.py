"""Explicit heading ids: Docusaurus' `{#id}` and MkDocs' attr_list `{ #id .class key=value }` set the chunk's anchor."""

from __future__ import annotations

import pytest

from bookchat.documents.chunking import Chunk, chunk_document, chunk_markdown, chunk_url, document_url, github_slug
from bookchat.documents.loaders import load_document
from bookchat.documents.markdown import heading_text, split_heading_id

PAGE = "https://book.example.org/docs/module-2/lidar"


def chunks_of(markdown: str) -> list[Chunk]:
    return chunk_markdown(markdown, count_tokens=lambda text: len(text.split()), max_tokens=50, overlap_tokens=0)


def only_section(heading: str) -> tuple[tuple[str, ...], str | None]:
    """The heading path and URL fragment of the one chunk under `heading` on a page titled Lidar."""
    (chunk,) = chunks_of(f"# Lidar\n\n{heading}\n\nThe scanner turns ten times a second.\n")
    url = chunk_url(PAGE, chunk)
    assert url is not None
    return chunk.heading_path, url.partition("#")[2] or None


@pytest.mark.parametrize(
    "heading",
    [
        "## Rig sensors {#rig-sensors}",  # Docusaurus
        "## Rig sensors\\{#rig-sensors\\}",  # Docusaurus in MDX, braces escaped
        "## Rig sensors { #rig-sensors }",  # MkDocs (Python-Markdown attr_list)
        "## Rig sensors {: #rig-sensors }",
        "## Rig sensors {:#rig-sensors}",
        "## Rig sensors { #rig-sensors .wide }",
        "## Rig sensors { .wide #rig-sensors }",
        "## Rig sensors {#rig-sensors .wide data-x=1}",
        "## Rig sensors { #rig-sensors data-caption=\"Lidar and cameras\" title='A: b' }",
        "## Rig sensors { #rig-sensors } ##",  # closing hashes
        "Rig sensors { #rig-sensors }\n------------",  # setext
    ],
)
def test_explicit_ids_of_every_syntax_are_the_anchor_and_leave_the_heading_text(heading: str) -> None:
    assert only_section(heading) == (("Lidar", "Rig sensors"), "rig-sensors")


def test_explicit_id_after_inline_markup() -> None:
    assert only_section("## The **spinning** `lidar` { #spin .wide }") == (("Lidar", "The spinning lidar"), "spin")
    assert heading_text("Rig *sensors* {: #rig .wide }") == ("Rig sensors", "rig")


@pytest.mark.parametrize(
    ("heading", "text"),
    [
        ("## The {placeholder} syntax", "The {placeholder} syntax"),
        ("## Using {{ variables }}", "Using {{ variables }}"),
        ("## dict {a: 1}", "dict {a: 1}"),
        ("## Set {x, y}", "Set {x, y}"),
        ("## The `{#id}` syntax", "The {#id} syntax"),
        ("## Ends in code `{#id}`", "Ends in code {#id}"),
        ("## Lone hash {#}", "Lone hash {#}"),
        ("## Two groups {#a} {#b} text", "Two groups {#a} {#b} text"),
    ],
)
def test_braces_for_another_reason_are_heading_text(heading: str, text: str) -> None:
    assert only_section(heading) == (("Lidar", text), github_slug(text))


def test_split_heading_id_keeps_the_raw_text_before_the_id() -> None:
    assert split_heading_id("The **bold** part { #x }") == ("The **bold** part", "x")
    assert split_heading_id(" part {#x}") == (" part", "x")  # a last inline piece keeps its leading space
    assert split_heading_id("Using {{ variables }}") == ("Using {{ variables }}", None)
    # attr_list: the last id wins, as Python-Markdown sets the attribute twice
    assert split_heading_id("Both { #first #second }") == ("Both", "second")


def test_duplicate_explicit_ids_and_mixed_slugs_behave_like_docusaurus() -> None:
    # Explicit ids are used as they are (twice if written twice) and never enter the slugger, so an implicit slug
    # that equals an explicit id is not suffixed; implicit slugs are de-duplicated among themselves with -1, -2.
    markdown = (
        "# Lidar\n\n"
        "## Sensors\n\nOne.\n\n"
        "## Rig { #sensors }\n\nTwo.\n\n"
        "## Sensors\n\nThree.\n\n"
        "## Other rig {#sensors}\n\nFour.\n\n"
        "## Calibration {: #setup }\n\nFive.\n\n"
        "## Setup\n\nSix.\n\n"
        "## Sensors\n\nSeven.\n"
    )
    result = [(chunk.heading_path[-1], chunk.anchor) for chunk in chunks_of(markdown)]
    assert result == [
        ("Sensors", "sensors"),
        ("Rig", "sensors"),
        ("Sensors", "sensors-1"),
        ("Other rig", "sensors"),
        ("Calibration", "setup"),
        ("Setup", "setup"),
        ("Sensors", "sensors-2"),
    ]


def test_explicit_ids_on_html_pages() -> None:
    # HTML pages have anchors only where the heading has an id; the HTML loader writes it as `{#id}`.
    (chunk,) = chunk_markdown(
        "## Rig sensors { #rig-sensors }\n\nText.\n",
        count_tokens=lambda text: len(text.split()),
        max_tokens=50,
        overlap_tokens=0,
        slug_anchors=False,
    )
    assert (chunk.heading_path, chunk.anchor) == (("Rig sensors",), "rig-sensors")


@pytest.mark.parametrize("name", ["module-2/02-lidar.md", "module-2/02-lidar.mdx"])
def test_loaded_pages_link_to_the_explicit_id(name: str) -> None:
    text = "# Lidar { #top }\n\nIntro.\n\n## Rig sensors { #rig-sensors .wide }\n\nThe scanner turns.\n"
    document = load_document(name, text.encode())
    assert document.title == "Lidar"
    page = document_url(document, "https://book.example.org/docs")
    chunks = chunk_document(document, count_tokens=lambda text: len(text.split()), max_tokens=50, overlap_tokens=0)
    assert [(chunk.heading_path, chunk_url(page, chunk)) for chunk in chunks] == [
        (("Lidar",), "https://book.example.org/docs/module-2/lidar"),
        (("Lidar", "Rig sensors"), "https://book.example.org/docs/module-2/lidar#rig-sensors"),
    ]
