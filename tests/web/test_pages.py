"""The web router over HTTP: widget assets (types, caching, ETag), the demo site (Markdown, anchors, links, safety)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from bookchat.documents.chunking import chunk_markdown, docusaurus_slug
from bookchat.web import pages
from bookchat.web import router as web_router

INDEX = """---
title: Robot handbook
slug: /
---

import Tabs from '@theme/Tabs';

# Robot handbook

Welcome. Read [the safety page](./safety/01-rules.md#emergency-stop) first.

<script>alert("docs are shown, never run")</script>

## Charging the battery

The robot charges in forty minutes.

## Charging the battery

A second heading with the same text gets another anchor.

## Custom anchor {#my-anchor}

:::tip Remember
Charge every night:

```bash
robot charge --overnight
```
:::

See [the vendor](https://vendor.example.org/robot), [a missing page](./missing.md),
[outside](../../outside.md) and [a script](javascript:alert(1)).

![diagram](img/dock.png)

<Tabs>
</Tabs>
"""

RULES = """---
title: Safety rules
sidebar_position: 1
---

# Safety rules

## Emergency stop

Press the red button.
"""


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs")
    (root / "index.md").write_text(INDEX, encoding="utf-8")
    (root / "safety").mkdir()
    (root / "safety" / "01-rules.md").write_text(RULES, encoding="utf-8")
    (root / "img").mkdir()
    (root / "img" / "dock.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    (root / "img" / "notes.txt").write_text("not an image", encoding="utf-8")
    return root


@pytest.fixture
async def http(docs: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(web_router)
    app.state.docs_dir = docs
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize(("path", "media_type"), [("/widget.js", "text/javascript"), ("/widget.css", "text/css")])
async def test_widget_assets(http: httpx.AsyncClient, path: str, media_type: str) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300, stale-while-revalidate=86400"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    etag = response.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)

    again = await http.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert (await http.get(path, headers={"If-None-Match": f'W/{etag}, "other"'})).status_code == 304
    assert (await http.get(path, headers={"If-None-Match": '"stale"'})).status_code == 200

    head = await http.head(path)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(response.content))


async def test_widget_script_is_strict_and_self_contained(http: httpx.AsyncClient) -> None:
    script = (await http.get("/widget.js")).text
    assert '"use strict";' in script
    assert "innerHTML" not in script
    assert "eval(" not in script
    assert "new Function" not in script
    # No third-party requests: the only absolute URL is the SVG namespace.
    assert re.findall(r"https?://[^\s\"')]+", script.split("*/", 1)[1]) == ["http://www.w3.org/2000/svg"]
    stylesheet = (await http.get("/widget.css")).text
    selectors = re.findall(r"^([^\s@}/*][^{]*)\{", stylesheet, re.M)
    assert selectors
    for selector in selectors:
        for part in selector.split(","):
            part = part.strip()
            assert part.startswith((".bkc-root", 'html[data-theme="dark"] .bkc-root')) or re.fullmatch(
                r"\d+%|from|to", part
            ), part


async def test_demo_home_page(http: httpx.AsyncClient) -> None:
    response = await http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    html = response.text
    assert '<script src="/widget.js" data-title="Ask the book" defer></script>' in html
    assert "<title>Robot handbook · bookchat</title>" in html
    # Raw HTML and MDX in the docs are text, never markup.
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;docs are shown, never run&quot;)&lt;/script&gt;" in html
    assert "import Tabs" not in html
    assert "&lt;Tabs&gt;" not in html
    # Anchors as Docusaurus (and the chunker) make them.
    assert '<h2 id="charging-the-battery">' in html
    assert '<h2 id="charging-the-battery-1">' in html
    assert '<h2 id="my-anchor">Custom anchor</h2>' in html
    # Links between pages and images go to the demo site's own URLs.
    assert 'href="/guide/safety/rules#emergency-stop"' in html
    assert 'src="/guide/_assets/img/dock.png"' in html
    assert "<strong>Remember</strong>" in html
    assert "<blockquote>" in html
    assert "robot charge --overnight" in html
    assert '<a href="https://vendor.example.org/robot" rel="noopener noreferrer">' in html
    assert 'href="./missing.md"' in html  # unknown pages keep their link
    assert 'href="../../outside.md"' in html
    assert 'href="javascript' not in html  # shown as text, never a link
    # The sidebar lists every page, the current one marked.
    assert '<a href="/" aria-current="page">Robot handbook</a>' in html
    assert '<a href="/guide/safety/rules">Safety rules</a>' in html


async def test_guide_pages_follow_the_ingestion_urls(http: httpx.AsyncClient, docs: Path) -> None:
    # The chunker's URL for a page is BASE + docusaurus_slug(path); the demo serves it under /guide.
    slug = docusaurus_slug("safety/01-rules.md", {"title": "Safety rules", "sidebar_position": 1})
    response = await http.get("/guide" + slug)
    assert response.status_code == 200
    assert '<h2 id="emergency-stop">Emergency stop</h2>' in response.text
    redirect = await http.get("/guide/", follow_redirects=False)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/"


async def test_missing_pages_and_assets(http: httpx.AsyncClient) -> None:
    missing = await http.get("/guide/nope<script>")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    assert "<script>" not in missing.text
    asset = await http.get("/guide/_assets/img/dock.png")
    assert asset.status_code == 200
    assert asset.headers["content-type"] == "image/png"
    assert "sandbox" in asset.headers["content-security-policy"]
    for path in ["img/notes.txt", "../index.md", "img/../../etc/passwd", "img/none.png"]:
        assert (await http.get("/guide/_assets/" + path)).status_code == 404


async def test_no_docs_folder(docs: Path) -> None:
    app = FastAPI()
    app.include_router(web_router)
    app.state.docs_dir = None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        home = await client.get("/")
        page = await client.get("/guide/anything")
    assert home.status_code == 200
    assert "No user guide was found" in home.text
    assert '<script src="/widget.js"' in home.text
    assert page.status_code == 404


def test_find_docs_dir(tmp_path: Path) -> None:
    assert pages.find_docs_dir([tmp_path / "missing", tmp_path]) is None
    (tmp_path / "a.md").write_text("# A", encoding="utf-8")
    assert pages.find_docs_dir([tmp_path / "missing", tmp_path]) == tmp_path


def test_front_matter_edge_cases() -> None:
    assert pages.split_front_matter("---\n: [unbalanced\n---\nbody") == ({}, "body")
    assert pages.split_front_matter("no front matter") == ({}, "no front matter")
    assert pages.split_front_matter("---\n- a list\n---\nbody")[0] == {}


async def test_the_sample_book_setting_picks_the_guide(docs: Path) -> None:
    app = FastAPI()
    app.include_router(web_router)
    app.state.settings = SimpleNamespace(sample_book=docs / "safety")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        home = await client.get("/")
    assert home.status_code == 200
    assert "<title>Safety rules · bookchat</title>" in home.text  # no index: the first page is the home page


DEMO_PATHS = ["/", "/guide", "/guide/", "/guide/safety/rules", "/guide/_assets/img/dock.png", "/demo.css"]


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_demo_site_can_be_turned_off_while_the_widget_stays(
    docs: Path, tmp_path: Path, enabled: bool
) -> None:
    from bookchat.config import Settings
    from bookchat.main import create_app

    app = create_app(Settings(data_dir=tmp_path, demo_enabled=enabled, _env_file=None))
    app.state.docs_dir = docs
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        for path in ("/widget.js", "/widget.css"):
            assert (await client.get(path)).status_code == 200, path
        for path in DEMO_PATHS:
            response = await client.get(path)
            if enabled:
                assert response.status_code in (200, 308), path
                continue
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("application/problem+json"), path
            assert response.json()["code"] == "demo-disabled"


HEADING_IDS = """# Sensor guide { #top }

## Rig sensors {#rig}

## Rig sensors { #rig-mkdocs }

## The **spinning** lidar {: #spin .wide }

## Cameras {#cams .wide data-x=1}

## Escaped for MDX \\{#escaped\\}

## The {placeholder} syntax

## Using {{ variables }}

## dict {a: 1}

## Rig sensors
"""


def test_guide_headings_take_every_explicit_id_syntax_like_the_chunker(tmp_path: Path) -> None:
    (tmp_path / "ids.md").write_text(HEADING_IDS, encoding="utf-8")
    page = pages.render_page(tmp_path, "ids", widget_title="Ask")
    assert page is not None
    assert page.title == "Sensor guide"
    headings = re.findall(r'<h2 id="([^"]*)">(.*?)</h2>', page.html)
    assert headings == [
        ("rig", "Rig sensors"),
        ("rig-mkdocs", "Rig sensors"),
        ("spin", "The <strong>spinning</strong> lidar"),
        ("cams", "Cameras"),
        ("escaped", "Escaped for MDX"),
        ("the-placeholder-syntax", "The {placeholder} syntax"),
        ("using--variables-", "Using {{ variables }}"),
        ("dict-a-1", "dict {a: 1}"),
        ("rig-sensors", "Rig sensors"),
    ]
    # The same anchors (and plain heading texts) as the ingestion gives the chunks, so every citation opens here.
    book = HEADING_IDS.replace("\n\n", "\n\nText.\n\n") + "\nText.\n"
    chunks = chunk_markdown(book, count_tokens=lambda text: len(text.split()), overlap_tokens=0)
    assert chunks[0].heading_path == ("Sensor guide",)
    assert [chunk.anchor for chunk in chunks[1:]] == [anchor for anchor, _ in headings]
    assert [chunk.heading_path[-1] for chunk in chunks[1:]] == [re.sub(r"</?strong>", "", t) for _, t in headings]
