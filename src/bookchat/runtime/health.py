"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from bookchat.runtime.dependencies import ResourcesDep

router = APIRouter(prefix="/api", tags=["health"])

CHECK_TIMEOUT_SECONDS = 3.0


class Health(BaseModel):
    status: Literal["ok"] = Field(examples=["ok"])


class Check(BaseModel):
    ok: bool = Field(examples=[True])
    detail: str = Field(examples=["embedded PostgreSQL (.bookchat/postgres)"])


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"] = Field(examples=["ready"])
    checks: dict[str, Check] = Field(
        examples=[
            {
                "postgres": {"ok": True, "detail": "SELECT 1 answered"},
                "qdrant": {"ok": True, "detail": "Qdrant local folder, collection 'bookchat'"},
                "llm": {"ok": True, "detail": "none configured: extractive answers"},
            }
        ]
    )
    failed: list[str] = Field(examples=[[]], description="Names of the checks that failed.")


@router.get("/health", response_model=Health, summary="Liveness")
async def health() -> Health:
    """Answers as long as the process serves requests. Touches nothing else, so it is cheap to poll."""
    return Health(status="ok")


async def _probe(name: str, call: asyncio.Future[None] | object, ok_detail: str) -> tuple[str, Check]:
    try:
        await asyncio.wait_for(call, CHECK_TIMEOUT_SECONDS)  # type: ignore[arg-type]
    except TimeoutError:
        return name, Check(ok=False, detail=f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    except Exception as exc:  # a readiness probe reports every failure instead of raising it
        return name, Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    return name, Check(ok=True, detail=ok_detail)


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "A dependency failed; `failed` names it."}},
)
async def ready(resources: ResourcesDep) -> JSONResponse:
    """Checks PostgreSQL (`SELECT 1`) and Qdrant, and reports whether an LLM is configured.

    200 when the service can answer questions; 503 naming what failed otherwise. With no LLM configured the
    service is still ready: it answers extractively.
    """
    settings = resources.settings
    results = await asyncio.gather(
        _probe("postgres", resources.database.ping(), f"SELECT 1 answered by {resources.database.description}"),
        _probe("qdrant", resources.store.ping(), resources.store.description),
    )
    checks = dict(results)
    provider = settings.resolved_llm_provider
    checks["llm"] = Check(
        ok=True,
        detail="none configured: extractive answers"
        if provider == "none"
        else f"{provider} ({resources.llm.model_name if resources.llm is not None else 'not initialised'})",
    )
    failed = [name for name, check in checks.items() if not check.ok]
    body = Readiness(status="unavailable" if failed else "ready", checks=checks, failed=failed)
    return JSONResponse(body.model_dump(), status_code=503 if failed else 200)
