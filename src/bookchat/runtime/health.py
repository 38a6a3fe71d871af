"""Liveness and readiness: what the probes report, and the probing itself (no HTTP, no principal).

The router (`bookchat.health.router`) decides who sees what: the full report names the database's user, host and
name and quotes exception text, so only an admin gets it; everyone else gets `public_view`. Failures are logged
in full either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Literal

from pydantic import BaseModel, Field

from bookchat.runtime.resources import Resources

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0
PUBLIC_OK = "ok"
PUBLIC_FAILED = "unavailable"


class Health(BaseModel):
    status: Literal["ok"] = Field(examples=["ok"])


class Check(BaseModel):
    ok: bool = Field(examples=[True])
    detail: str = Field(
        examples=["ok"],
        description='"ok" or "unavailable"; what was checked and why it failed only for an admin.',
    )


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"] = Field(examples=["ready"])
    checks: dict[str, Check] = Field(
        examples=[
            {
                "postgres": {"ok": True, "detail": "ok"},
                "qdrant": {"ok": True, "detail": "ok"},
                "llm": {"ok": True, "detail": "ok"},
            }
        ]
    )
    failed: list[str] = Field(examples=[[]], description="Names of the checks that failed.")


async def _probe(name: str, call: Awaitable[None], ok_detail: str) -> tuple[str, Check]:
    try:
        await asyncio.wait_for(call, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return name, Check(ok=False, detail=f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    except Exception as exc:  # a readiness probe reports every failure instead of raising it
        return name, Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    return name, Check(ok=True, detail=ok_detail)


async def readiness(resources: Resources) -> Readiness:
    """Check PostgreSQL (`SELECT 1`) and Qdrant, and report the LLM configured; the full report, failures logged.

    With no LLM configured the service is still ready: it answers extractively.
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
    for name in failed:
        log.warning("readiness check %s failed: %s", name, checks[name].detail)
    return Readiness(status="unavailable" if failed else "ready", checks=checks, failed=failed)


def public_view(report: Readiness) -> Readiness:
    """The report without details: check names, ok or not, and a generic word for each."""
    return report.model_copy(
        update={
            "checks": {
                name: Check(ok=check.ok, detail=PUBLIC_OK if check.ok else PUBLIC_FAILED)
                for name, check in report.checks.items()
            }
        }
    )
