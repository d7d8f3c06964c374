"""Health and metrics routes on the panel's port: ``/healthz``, ``/readyz`` and (with METRICS_TOKEN) ``/metrics``.

They answer without the panel's login and reveal nothing beyond what they are for: health is "the
process answers", readiness is "the model is loaded and Discord is connected" (or there is no bot),
and metrics need their own bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr

from admin_ui.context import NO_DISCORD, PANEL_ONLY, DiscordState
from engine.ops.metrics import CONTENT_TYPE
from engine.service import Engine

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
METRICS_FAILURES = 10  # wrong tokens one client may send within METRICS_WINDOW
METRICS_WINDOW = 15 * 60.0
METRICS_TRACKED = 10_000
_NO_STORE = {"Cache-Control": "no-store"}


class TokenRefusals:
    """Wrong metrics tokens per client: past METRICS_FAILURES within METRICS_WINDOW seconds a client is refused at
    once until the window has passed (bounded: at most METRICS_TRACKED clients are remembered)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def failed(self, client: str) -> None:
        """Count a wrong token from ``client``."""
        if client not in self._failures and len(self._failures) >= METRICS_TRACKED:
            self._failures.pop(next(iter(self._failures)))  # the oldest client goes first
        self._failures.setdefault(client, deque(maxlen=METRICS_FAILURES)).append(self._clock())

    def refused_for(self, client: str) -> float:
        """Seconds ``client`` must wait before trying again (0: it may try now)."""
        times = self._failures.get(client)
        if not times or len(times) < METRICS_FAILURES:
            return 0.0
        return max(0.0, times[0] + METRICS_WINDOW - self._clock())


def is_ready(engine: Engine, discord_state: DiscordState) -> bool:
    """The model can run jobs, and the Discord bot (when this process has one) is connected."""
    return engine.model_state == "ready" and discord_state() in ("connected", NO_DISCORD, PANEL_ONLY)


def add_health_routes(app: FastAPI, engine: Engine, discord_state: DiscordState,
                      metrics_token: SecretStr | None) -> None:
    """Add the three routes to the panel's parent app (the login gate lets HEALTH_PATHS through)."""
    refusals = TokenRefusals()

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
        client = request.client.host if request.client else "?"
        wait = refusals.refused_for(client)
        if wait:
            return JSONResponse({"detail": f"Too many wrong metrics tokens; try again in {wait:.0f} s."},
                                status_code=429, headers={"Retry-After": str(int(wait) + 1)})
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), metrics_token.get_secret_value().encode()):
            refusals.failed(client)
            return JSONResponse({"detail": "Give the metrics token: Authorization: Bearer <METRICS_TOKEN>"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body = await asyncio.to_thread(engine.metrics.render)
        return Response(body, media_type=CONTENT_TYPE, headers=_NO_STORE)
