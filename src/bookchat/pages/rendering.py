"""A rewritten section as HTML for the widget: MDX markup dropped, raw HTML escaped, the heading's anchor kept."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from bookchat.documents.loaders import clean_mdx
from bookchat.documents.markdown import split_heading_id


def _heading_open(renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    inline = tokens[idx + 1]
    children = inline.children or []
    custom_id = None
    if children and children[-1].type == "text":
        children[-1].content, custom_id = split_heading_id(children[-1].content)
    anchor = custom_id or (env.get("anchor") if not env.get("anchor_used") else None)
    if anchor:
        env["anchor_used"] = True
        tokens[idx].attrSet("id", str(anchor))
    return renderer.renderToken(tokens, idx, options, env)


def _external_link(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    if str(tokens[idx].attrGet("href") or "").startswith(("http://", "https://")):
        tokens[idx].attrSet("rel", "noopener noreferrer")
    return renderer.renderToken(tokens, idx, options, env)


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # Raw HTML off: a chapter's text is shown, never executed (the widget sanitises once more).
    md = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")
    md.add_render_rule("heading_open", _heading_open)
    md.add_render_rule("link_open", _external_link)
    return md


def render_section(markdown: str, anchor: str | None = None) -> str:
    """HTML of one section; its first heading gets `anchor` (or the explicit `{#id}` it carries)."""
    return str(_markdown().render(clean_mdx(markdown), {"anchor": anchor}))
