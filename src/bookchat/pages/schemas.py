"""Request and response bodies of /api/pages and /api/features, and the events of their streams."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from bookchat.auth.schemas import Background, LanguageTag
from bookchat.pages.languages import Direction
from bookchat.text import StorableStr

MAX_PAGE_CHARS = 2000

PageRef = Annotated[
    StorableStr,
    Field(
        min_length=1,
        max_length=MAX_PAGE_CHARS,
        description="The chapter: its document id, its source path, or the URL of its page (fragment ignored).",
        examples=["module-1/ros2-basics.md"],
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonalizeRequest(_Body):
    """A chapter to rewrite for the reader's background (the stored one unless `background` is given)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"page": "https://book.example.org/docs/intro"}]}
    )

    page: PageRef
    stream: bool = Field(False, description="Stream Server-Sent Events (also with `Accept: text/event-stream`).")
    background: Background | None = Field(
        None, description="A background for this request instead of the stored one (guests, when allowed)."
    )


class TranslateRequest(_Body):
    """A chapter to translate; `language` defaults to the reader's profile language, else the server's (ur)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"page": "module-1/ros2-basics.md", "language": "ur"}]}
    )

    page: PageRef
    language: LanguageTag | None = Field(None, description="BCP-47 tag of the target language.")
    stream: bool = Field(False, description="Stream Server-Sent Events (also with `Accept: text/event-stream`).")


SectionStatus = Literal["rewritten", "unchanged", "original"]


class PageSection(BaseModel):
    """One section of the chapter, in order: its Markdown and HTML, and how it was made."""

    index: int = Field(ge=0, examples=[2])
    heading: str | None = Field(description="The source heading's text.", examples=["Nodes and topics"])
    level: int | None = Field(description="Heading level 1-6; null before the first heading.", examples=[2])
    anchor: str | None = Field(description="The heading's anchor id, as on the original page.", examples=["nodes"])
    markdown: str = Field(examples=["## Nodes and topics {#nodes}\n\nA node is …"])
    html: str = Field(description="The Markdown rendered (raw HTML escaped), for in-page display.")
    status: SectionStatus = Field(
        description="`rewritten`; `unchanged` (nothing to rewrite, e.g. only code); `original` (the model's "
        "version broke code, links or headings twice, so the section is shown as written, see `note`)."
    )
    cached: bool = Field(description="Served from the cache, without a model call.")
    note: str | None = Field(None, description="Why the section is shown as written.")


class PageUsage(BaseModel):
    """What the request cost: model calls (retries included) and their tokens; zero when all was cached."""

    model_calls: int = Field(ge=0, examples=[7])
    prompt_tokens: int = Field(ge=0, examples=[5400])
    completion_tokens: int = Field(ge=0, examples=[4100])


class PageMeta(BaseModel):
    """What is being produced: the chapter, its content hash, the kind and the text direction."""

    document_id: UUID
    title: str = Field(examples=["ROS 2 basics"])
    url: str | None = Field(examples=["https://book.example.org/docs/module-1/ros2-basics"])
    content_hash: str = Field(
        description="The source document's content hash the result is made from.", examples=["9f2c1e…"]
    )
    kind: Literal["personalize", "translate"]
    language: str | None = Field(description="The target language (translations only).", examples=["ur"])
    direction: Direction = Field(description="`rtl` for right-to-left languages: set `dir` on the container.")
    model: str = Field(examples=["gemini-2.5-flash"])
    prompt_version: str = Field(examples=["pages-1"])
    section_count: int = Field(ge=1, examples=[9])
    cached_sections: int = Field(ge=0, description="Sections already in the cache.", examples=[0])


class PageResponse(PageMeta):
    """The whole chapter, rewritten (the non-stream reply)."""

    markdown: str = Field(description="The chapter's Markdown: the sections joined.")
    sections: list[PageSection]
    cached: bool = Field(description="Every section came from the cache (no model call).")
    usage: PageUsage


class DeltaEvent(BaseModel):
    """Text of the section being written (provisional: its `section` event is the final text)."""

    index: int = Field(ge=0, examples=[1])
    text: str = Field(examples=["A publisher sends "])


class DoneEvent(BaseModel):
    """The end of a stream."""

    content_hash: str = Field(examples=["9f2c1e…"])
    cached: bool = Field(description="No model call was needed.", examples=[False])
    fallbacks: int = Field(ge=0, description="Sections shown as written because the model broke them.", examples=[0])
    usage: PageUsage


class ErrorEvent(BaseModel):
    """A stream that failed after it started (sections already sent stay valid and are cached)."""

    code: str = Field(examples=["llm-timeout"])
    message: str


class PagesFeatures(BaseModel):
    """Whether chapters can be personalised and translated here (both need a language model)."""

    personalize: bool = Field(examples=[True])
    translate: bool = Field(examples=[True])
    default_language: str = Field(examples=["ur"])
    direction: Direction = Field(description="Direction of the default language.")
    guests: bool = Field(description="Guests may use them (with a background given in the request).", examples=[False])


class FeaturesResponse(BaseModel):
    """What this server offers, so the widget shows only what works."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "llm": True,
                    "registration": True,
                    "anonymous": True,
                    "pages": {"personalize": True, "translate": True, "default_language": "ur",
                              "direction": "rtl", "guests": False},
                }
            ]
        }
    )  # fmt: skip

    llm: bool = Field(description="A language model is configured (else answers are extractive).")
    registration: bool = Field(description="Readers may create accounts (POST /api/auth/register).")
    anonymous: bool = Field(description="Readers may chat with a guest token.")
    pages: PagesFeatures
