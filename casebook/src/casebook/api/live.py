"""``GET /api/v1/realtime``: live connections and, per channel, subscribed clients and
users, for the operator page (admins; this process's own connections)."""

from __future__ import annotations

from fastapi import APIRouter

from casebook.api.deps import AdminDep, ServicesDep
from casebook.responses import RealtimeStats
from lockstep import JSONBytesResponse, error_responses

router = APIRouter(tags=["realtime"])


@router.get("/realtime", response_model=RealtimeStats, responses=error_responses(403))
async def realtime_stats(_admin: AdminDep, services: ServicesDep) -> JSONBytesResponse:
    return JSONBytesResponse(services.realtime.stats(), headers={"Cache-Control": "no-store"})
