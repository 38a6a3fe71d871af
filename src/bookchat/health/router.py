"""/api/health (liveness) and /api/ready (readiness, details for admins only), for load balancers and operators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from bookchat.auth.dependencies import OptionalPrincipalDep
from bookchat.runtime.dependencies import ResourcesDep
from bookchat.runtime.health import Health, Readiness, public_view, readiness

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness")
async def health() -> Health:
    """Answers as long as the process serves requests. Touches nothing else, so it is cheap to poll."""
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "A dependency failed; `failed` names it."}},
)
async def ready(resources: ResourcesDep, principal: OptionalPrincipalDep) -> JSONResponse:
    """Checks PostgreSQL (`SELECT 1`) and Qdrant, and reports whether an LLM is configured.

    200 when the service can answer questions; 503 naming what failed otherwise. No credentials are needed:
    anyone gets the checks' names and whether each is ok. An admin (admin token or admin JWT) also gets what
    was checked and why a check failed, which the log has too.
    """
    report = await readiness(resources)
    body = report if principal is not None and principal.is_admin else public_view(report)
    return JSONResponse(body.model_dump(), status_code=503 if report.failed else 200)
