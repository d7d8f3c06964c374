"""Health and metrics routes on the panel's port: ``/healthz``, ``/readyz`` and (with METRICS_TOKEN) ``/metrics``.

They answer without the panel's login and reveal nothing beyond what they are for: health is "the
process answers", readiness is "the model is loaded and Discord is connected" (or there is no bot),
and metrics need their own bearer token.
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr

from admin_ui.context import NO_DISCORD, DiscordState
from engine.ops.metrics import CONTENT_TYPE
from engine.service import Engine

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_NO_STORE = {"Cache-Control": "no-store"}


def is_ready(engine: Engine, discord_state: DiscordState) -> bool:
    """The model can run jobs, and the Discord bot (when this process has one) is connected."""
    return engine.model_state == "ready" and discord_state() in ("connected", NO_DISCORD)


def add_health_routes(app: FastAPI, engine: Engine, discord_state: DiscordState,
                      metrics_token: SecretStr | None) -> None:
    """Add the three routes to the panel's parent app (the login gate lets HEALTH_PATHS through)."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"}, headers=_NO_STORE)

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ready = is_ready(engine, discord_state)
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503, headers=_NO_STORE)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if metrics_token is None:
            return JSONResponse({"detail": "Not found. Set METRICS_TOKEN to scrape here, or METRICS_PORT."},
                                status_code=404)
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), metrics_token.get_secret_value().encode()):
            return JSONResponse({"detail": "Give the metrics token: Authorization: Bearer <METRICS_TOKEN>"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body = await asyncio.to_thread(engine.metrics.render)
        return Response(body, media_type=CONTENT_TYPE, headers=_NO_STORE)
