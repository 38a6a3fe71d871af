"""Sections, placeholders, languages and reply clean-up, without HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookchat.auth.schemas import Background
from bookchat.pages.languages import direction, language_name, normalize_tag
from bookchat.pages.placeholders import protect, restore, restore_partial
from bookchat.pages.prompts import describe_reader, profile_bucket, translate_instructions
from bookchat.pages.rendering import render_section
from bookchat.pages.rewriter import _unwrap, _unwrap_partial
from bookchat.pages.sections import join_sections, split_chapter
from tests.conftest import SHARED_DATA

SAMPLE = """Intro with `code`, $x^2$, \\(y\\), [a link](http://x.org/a "t"), [ref][r], ![img](a.png), <Tabs>, <br/>,
<https://auto.example>, https://e.com/x. and {/* a comment */} and $5 or $10.

[r]: https://ref.example.org

:::tip Title
Keep *this* prose.
:::

```python
# not a heading
print("hi")
```

~~~
tilde fence
~~~

$$
E = mc^2
$$

| a | b |
|---|:-:|
| 1 | 2 |

- item
  ```js
  indented()
  ```
import Foo from '@site/foo';
export const x = 1;
<!-- hidden -->
Literal ⟦1⟧ brackets."""


def test_protect_and_restore_give_the_bytes_back_and_hide_everything_kept() -> None:
    protected = protect(SAMPLE)
    assert restore(protected.text, protected).text == SAMPLE
    for hidden in ("`code`", "x^2", "x.org", "[ref][r]", "a.png", "<Tabs>", "<br/>", "auto.example", "e.com",
                   "a comment", "ref.example.org", ":::", "print(", "tilde fence", "mc^2", "|---|", "indented()",
                   "@site/foo", "export const", "hidden"):  # fmt: skip
        assert hidden not in protected.text, hidden
    for kept in ("Intro with", "$5 or $10", "Keep *this* prose.", "| a | b |", "- item", "Literal", "brackets"):
        assert kept in protected.text, kept


def test_restore_reports_lost_repeated_and_invented_tokens() -> None:
    protected = protect("Run `a` then `b`.")
    assert protected.text == "Run ⟦1⟧ then ⟦2⟧."
    assert restore("Run ⟦1⟧ then.", protected).problems == ("⟦2⟧ missing",)
    assert restore("⟦1⟧ ⟦1⟧ ⟦2⟧", protected).problems == ("⟦1⟧ repeated",)
    assert restore("⟦1⟧ ⟦2⟧ ⟦9⟧", protected).problems == ("⟦9⟧ unknown",)
    assert restore("ترجمہ ⟦2⟧ اور ⟦1⟧", protected).text == "ترجمہ `b` اور `a`"


def test_block_tokens_get_their_own_line_without_added_indentation() -> None:
    protected = protect("Text:\n\n```sh\nls\n```\n\nEnd.")
    assert restore("Text: ⟦1⟧ End.", protected).text == "Text: \n```sh\nls\n```\n End."
    assert restore("Text:\n\n    ⟦1⟧\n\nEnd.", protected).text == "Text:\n\n```sh\nls\n```\n\nEnd."


def test_partial_restore_holds_back_an_unfinished_token() -> None:
    protected = protect("Use `ls` and `cd`.")
    assert restore_partial("Use ⟦1⟧ and ⟦", protected) == "Use `ls` and "
    assert restore_partial("Use ⟦1⟧ and ⟦2⟧.", protected) == "Use `ls` and `cd`."


def test_sections_follow_headings_outside_code_and_rejoin_exactly() -> None:
    text = "Before.\n\n# Title\n\nIntro.\n\n```\n## not a heading\n```\n\n## Setup {#custom}\n\nA.\n\n## Setup\n\nB.\n"
    sections = split_chapter(text, max_chars=1000)
    assert [(s.heading.level, s.heading.text, s.heading.anchor) if s.heading else None for s in sections] == [
        None, (1, "Title", None), (2, "Setup", "custom"), (2, "Setup", "setup"),
    ]  # fmt: skip
    assert join_sections([s.source for s in sections]) == text
    long = (
        "## Long\n\n" + "\n\n".join(f"Paragraph {n} " + "x" * 80 for n in range(20)) + "\n\n```\n" + "y\n" * 50 + "```"
    )
    parts = split_chapter(long, max_chars=300)
    assert len(parts) > 5
    assert parts[0].heading is not None
    assert all(part.continued and part.heading is None for part in parts[1:])
    assert "```\n" + "y\n" * 50 + "```" in parts[-1].source  # a code block is never cut
    assert join_sections([s.source for s in parts]) == long


def test_every_chapter_of_the_shared_textbook_rejoins_exactly() -> None:
    book = SHARED_DATA / "book-physical-ai-amnarehmani"
    files = sorted(Path(book).rglob("*.md*"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        sections = split_chapter(text, max_chars=2000)
        assert join_sections([s.source for s in sections]) == text, path
        for section in sections:
            protected = protect(section.source)
            assert restore(protected.text, protected).text == section.source, path


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("ur", "rtl"), ("UR-pk", "rtl"), ("ur-Latn", "ltr"), ("ar", "rtl"), ("he", "rtl"), ("fa-IR", "rtl"),
     ("pa", "ltr"), ("pa-Arab", "rtl"), ("en", "ltr"), ("zh-Hant", "ltr"), ("xx", "ltr")],
)  # fmt: skip
def test_direction(tag: str, expected: str) -> None:
    assert direction(tag) == expected


def test_language_names_and_instructions() -> None:
    assert normalize_tag(" UR-PK ") == "ur-pk"
    assert language_name("ur-pk") == "Urdu"
    assert language_name("tlh") == "tlh"
    instructions = translate_instructions("ur", ["ROS 2", "URDF"])
    assert "Urdu (ur)" in instructions
    assert "ROS 2, URDF" in instructions
    assert "Always keep" not in translate_instructions("tlh", [])


def test_profile_buckets_share_levels_and_keep_interests_out_of_the_key() -> None:
    plain = Background(software="beginner", hardware="none")
    assert profile_bucket(plain) == "software=beginner;hardware=none"
    one = profile_bucket(Background(software="beginner", hardware="none", interests="My secret Robot"))
    same = profile_bucket(Background(software="beginner", hardware="none", interests="  my secret   robot "))
    assert one == same
    assert "secret" not in one
    assert "secret Robot" in describe_reader(Background(software="beginner", hardware="none", interests="secret Robot"))


def test_replies_lose_their_wrappers() -> None:
    assert _unwrap("<section>\n## A\n\nText\n</section>") == "## A\n\nText"
    assert _unwrap("```markdown\n## A\n\nText\n```") == "## A\n\nText"
    assert _unwrap("```markdown\n## A\n```py\nx\n```\n```") != "## A"  # a reply with code inside keeps its fences
    assert _unwrap_partial("<section>\n## A") == "## A"
    assert _unwrap_partial("## A") == "## A"


def test_rendering_keeps_anchors_and_escapes_markup() -> None:
    html = render_section("## عنوان {#setup}\n\n<img src=x onerror=alert(1)> *text*", None)
    assert html.startswith('<h2 id="setup">عنوان</h2>')
    assert "onerror" not in html
    assert render_section("## Setup\n\nA [link](https://x.org).", "setup").startswith('<h2 id="setup">Setup</h2>')
    assert 'rel="noopener noreferrer"' in render_section("[l](https://x.org)")


def test_sections_without_prose_need_no_model() -> None:
    from bookchat.pages.rewriter import SectionRewriter

    heading_only, code_only, prose = split_chapter(
        "## Title\n\n## Code\n\n```\nx\n```\n\n## Prose\n\nWords.", max_chars=999
    )
    personalize = SectionRewriter(None, "personalize", "")  # type: ignore[arg-type]  # no call is made
    translate = SectionRewriter(None, "translate", "")  # type: ignore[arg-type]
    assert [personalize.needs_model(s) for s in (heading_only, code_only, prose)] == [False, False, True]
    assert [translate.needs_model(s) for s in (heading_only, code_only, prose)] == [True, True, True]
