"""Loaders: front matter, MDX/JSX cleaning, admonitions, code kept verbatim, HTML, text, PDF, bad input."""

from __future__ import annotations

import io

import pytest

from bookchat.documents.loaders import (
    UnsupportedDocument,
    clean_mdx,
    decode_text,
    detect_format,
    humanize,
    load_document,
    split_front_matter,
    strip_number_prefix,
    strip_tags,
)

MDX = """---
title: "Sensors in Gazebo"
id: m2-sensors
slug: sensors
sidebar_label: Sensors
description: Cameras, lidar and IMUs.
---

import Tabs from '@theme/Tabs';
import TabItem from '@theme/TabItem';
import {
  Chart,
  Legend,
} from '@site/src/components/Chart';
export const meta = {
  level: 2,
};

# Sensors

<Tabs groupId="lang">
  <TabItem value="py" label="Python">
Text inside a tab stays.
  </TabItem>
</Tabs>

:::tip Pro tip
Use `gpu_ray` for <b>speed</b>.
:::

:::warning[Careful]
Never trust a simulated IMU.
:::

{/* an MDX comment */}
<!-- an HTML comment -->

```jsx
import React from 'react';
export default function Demo() {
  return <Chatbot mode="selection" />;
}
```

See <https://gazebosim.org> and `<collision>` tags. 2 < 3 and a<br/>b.
"""


def test_markdown_front_matter_and_mdx_cleaning() -> None:
    document = load_document("docs/module-2/sensors.mdx", MDX.encode())
    assert document.format == "mdx"
    assert document.title == "Sensors in Gazebo"
    assert document.slug == "sensors"
    assert document.sidebar_label == "Sensors"
    assert document.description == "Cameras, lidar and IMUs."
    assert document.front_matter["id"] == "m2-sensors"
    text = document.text
    assert "import Tabs" not in text.split("```")[0]
    assert "Chart" not in text
    assert "level: 2" not in text
    assert "<Tabs" not in text
    assert "<TabItem" not in text
    assert "</Tabs>" not in text
    assert "Text inside a tab stays." in text
    assert "Tip: Pro tip" in text
    assert "Warning: Careful" in text
    assert ":::" not in text
    assert "Use `gpu_ray` for speed." in text
    assert "MDX comment" not in text
    assert "HTML comment" not in text
    # Code blocks are verbatim, JSX-looking lines included.
    assert "```jsx\nimport React from 'react';\nexport default function Demo() {\n" in text
    assert '  return <Chatbot mode="selection" />;\n}\n```' in text
    # Inline code, autolinks and a bare `<` survive; tags between words leave a space.
    assert "`<collision>`" in text
    assert "https://gazebosim.org" in text
    assert "2 < 3 and a b." in text


def test_title_falls_back_to_h1_then_file_name() -> None:
    assert load_document("a/intro.md", b"# The *Intro* {#start}\n\nBody").title == "The Intro"
    assert load_document("a/02-getting_started.md", b"Body only").title == "Getting started"
    only_label = b"---\nsidebar_label: Label\n---\nBody"
    assert load_document("a/x.md", only_label).title == "Label"


def test_front_matter_edge_cases() -> None:
    assert split_front_matter("---\n---\nBody") == ({}, "Body")
    assert split_front_matter("---\n- a list\n---\nBody") == ({}, "Body")
    assert split_front_matter("---\ntitle: [broken\n---\nBody") == ({}, "Body")
    assert split_front_matter("No front matter\n---\n") == ({}, "No front matter\n---\n")
    assert split_front_matter("---\ntitle: X\n---") == ({"title": "X"}, "")


def test_markdown_code_fences_inside_lists_and_tildes_are_kept() -> None:
    body = "1. Step\n   ```bash\n   <not-a-tag> ok\n   ```\n~~~\nimport x from 'y'\n~~~\n"
    cleaned = clean_mdx(body)
    assert "<not-a-tag> ok" in cleaned
    assert "import x from 'y'" in cleaned


def test_prose_that_starts_with_import_is_kept() -> None:
    cleaned = clean_mdx("import the data into a table.\n\nimport React, { useState } from 'react';\nimport 'x.css';\n")
    assert cleaned.strip() == "import the data into a table."


def test_strip_tags_leaves_prose_alone() -> None:
    assert strip_tags("a <b and c") == "a <b and c"
    assert strip_tags("x <Foo\n\nbar") == "x <Foo\n\nbar"
    assert strip_tags('<Img src="a.png" alt={"x > y"} />caption') == "caption"
    assert strip_tags("<>fragment</>") == "fragment"
    assert strip_tags("mail <me@example.org>") == "mail me@example.org"
    assert strip_tags("`a <b>` <i>c</i>") == "`a <b>` c"
    assert strip_tags("escaped \\<b> stays") == "escaped \\<b> stays"


def test_html_loader_keeps_structure_drops_scripts() -> None:
    page = b"""<html><head><title>Page title</title><style>.x{}</style></head>
    <body><nav>Menu</nav><main>
      <h1>Main heading</h1><p>Intro <code>x = 1</code> text.<script>alert(1)</script></p>
      <h2 id="setup-id">Setup</h2>
      <ul><li>first</li><li>second</li></ul>
      <pre class="language-python">def f():\n    return 1</pre>
      <table><tr><th>Key</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr></table>
    </main><footer>Footer</footer></body></html>"""
    document = load_document("site/page.html", page)
    assert document.format == "html"
    assert document.title == "Page title"
    text = document.text
    assert "# Main heading" in text
    assert "## Setup {#setup-id}" in text
    assert "Intro `x = 1` text." in text
    assert "- first" in text
    assert "- second" in text
    assert "```python\ndef f():\n    return 1\n```" in text
    assert "| Key | Value |\n|---|---|\n| a | 1 |" in text
    assert "alert" not in text
    assert "Menu" not in text
    assert ".x{}" not in text


def test_html_without_main_drops_chrome() -> None:
    document = load_document("x.htm", b"<body><header>Top</header><p>Only this.</p><footer>F</footer></body>")
    assert document.text == "Only this."
    assert document.title == "X"


def test_plain_text_and_decoding() -> None:
    document = load_document("notes/read_me.txt", "caf\u00e9\r\n\r\nsecond".encode())
    assert document.format == "text"
    assert document.title == "Read me"
    assert document.text == "caf\u00e9\n\nsecond"
    assert not document.structured
    assert decode_text("\ufeffbom".encode(), "x") == "bom"
    assert decode_text("caf\u00e9".encode("cp1252"), "x") == "caf\u00e9"
    assert decode_text("hi".encode("utf-16"), "x") == "hi"


def test_binary_and_unknown_files_are_refused() -> None:
    with pytest.raises(UnsupportedDocument) as binary:
        load_document("a.md", b"\x89PNG\r\n\x1a\n\x00\x00")
    assert binary.value.reason == "binary"
    with pytest.raises(UnsupportedDocument) as unknown:
        load_document("a.png", b"whatever")
    assert unknown.value.reason == "unsupported-type"
    with pytest.raises(UnsupportedDocument) as fake_pdf:
        load_document("a.pdf", b"not a pdf")
    assert fake_pdf.value.reason == "invalid"
    with pytest.raises(UnsupportedDocument) as broken_pdf:
        load_document("a.pdf", b"%PDF-1.4\n garbage")
    assert broken_pdf.value.reason == "invalid"
    with pytest.raises(UnsupportedDocument):
        load_document("a.html", b"<p>\x00\x00</p>")


def test_detect_format() -> None:
    assert detect_format("A.MD") == "markdown"
    assert detect_format("x.mdx") == "mdx"
    assert detect_format("upload", "application/pdf") == "pdf"
    assert detect_format("upload", "text/markdown; charset=utf-8") == "markdown"
    assert detect_format("x.docx", "application/octet-stream") is None


def test_number_prefixes_follow_docusaurus() -> None:
    assert strip_number_prefix("01-intro") == "intro"
    assert strip_number_prefix("003 - My Doc") == "My Doc"
    assert strip_number_prefix("1_setup") == "setup"
    assert strip_number_prefix("2021-01-31-post") == "2021-01-31-post"
    assert strip_number_prefix("8.0-release") == "8.0-release"
    assert strip_number_prefix("module-2") == "module-2"
    assert humanize("00-intro") == "Intro"


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one text line per page (Helvetica), built by hand."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font_number = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_number} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def test_pdf_pages_are_numbered() -> None:
    document = load_document("books/manual.pdf", make_pdf(["First page text", "", "Third page text"]))
    assert document.format == "pdf"
    assert document.title == "Manual"
    assert [(page.number, page.text) for page in document.pages] == [(1, "First page text"), (3, "Third page text")]
