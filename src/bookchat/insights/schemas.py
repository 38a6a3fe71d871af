"""Response models of the insights API (admins only); readers appear as pseudonyms, never by id."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from bookchat.conversations.schemas import Citation

Interval = Literal["day", "week"]
Rating = Literal["up", "down"]
EXAMPLE_TIME = "2026-12-01T00:00:00Z"


class Latency(BaseModel):
    """Percentiles in milliseconds over completed answers (None when there is none)."""

    p50: float | None = Field(examples=[420.0])
    p95: float | None = Field(examples=[1830.0])


class ModeFigures(BaseModel):
    """Figures of one answer mode, or of all of them (`mode` None)."""

    mode: Literal["retrieval", "selection", "extractive"] | None = Field(examples=["retrieval"])
    questions: int = Field(ge=0, examples=[120])
    answered: int = Field(ge=0, description="Answers that answered.", examples=[96])
    answered_share: float | None = Field(
        description="answered / answers judged (completed answers); None when none is judged.", examples=[0.8]
    )
    first_token_ms: Latency
    full_answer_ms: Latency


class Bucket(BaseModel):
    """One day or ISO week (starting Monday, UTC)."""

    start: datetime = Field(examples=[EXAMPLE_TIME])
    questions: int = Field(ge=0, examples=[40])
    answered: int = Field(ge=0, examples=[31])
    answered_share: float | None = Field(examples=[0.775])
    up: int = Field(ge=0, examples=[6])
    down: int = Field(ge=0, examples=[2])


class CitedSection(BaseModel):
    title: str = Field(examples=["Sensors"])
    heading_path: list[str] = Field(examples=[["Module 2", "Sensors", "IMU"]])
    url: str | None = Field(examples=["https://book.example.org/docs/module-2/imu"])
    citations: int = Field(ge=1, description="Answers citing the section.", examples=[17])


class Summary(BaseModel):
    """What readers asked in [from, to): per interval, per mode, feedback and the sections cited most."""

    from_: datetime = Field(alias="from", examples=[EXAMPLE_TIME])
    to: datetime = Field(examples=["2026-12-08T00:00:00Z"])
    interval: Interval = Field(examples=["day"])
    totals: ModeFigures
    up: int = Field(ge=0, examples=[25])
    down: int = Field(ge=0, examples=[4])
    by_mode: list[ModeFigures]
    series: list[Bucket] = Field(description="Intervals with at least one question, oldest first.")
    top_sections: list[CitedSection]

    model_config = {"populate_by_name": True}


class Gap(BaseModel):
    """Unanswered questions of one meaning: how often they were asked, when last, and how they were phrased."""

    id: int = Field(examples=[42])
    asked: int = Field(ge=1, examples=[7])
    last_asked: datetime = Field(examples=["2026-12-07T16:20:00Z"])
    examples: list[str] = Field(
        description="Up to five distinct phrasings, newest first.",
        examples=[["How do I calibrate the IMU?", "IMU calibration steps?"]],
    )


class GapPage(BaseModel):
    items: list[Gap]
    next_cursor: str | None = Field(examples=[None])
    complete: bool = Field(
        description="False while some unanswered questions are still waiting to be grouped (the next request"
        " groups more).",
        examples=[True],
    )


class RatedAnswer(BaseModel):
    """A rated answer with its question and the reader's comment."""

    feedback_id: UUID
    message_id: UUID
    rating: Rating = Field(examples=["down"])
    comment: str | None = Field(examples=["It cites the wrong chapter."])
    rated_at: datetime = Field(examples=[EXAMPLE_TIME])
    question: str = Field(examples=["How do I calibrate the IMU?"])
    answer: str = Field(examples=["Calibrate the IMU by ... [1]"])
    citations: list[Citation]
    mode: str | None = Field(examples=["retrieval"])
    reader: str = Field(description="A stable pseudonym of the reader, never their id.", examples=["3fa85f64c1b2"])
    asked_at: datetime = Field(examples=[EXAMPLE_TIME])


class RatedAnswerPage(BaseModel):
    items: list[RatedAnswer]
    next_cursor: str | None = Field(examples=[None])
