"""Error answers of the API that must not leak what the client sent.

FastAPI's default 422 lists pydantic's errors *with their input*: a 400 MB
body was echoed back whole, and a password that failed validation would be
too. Here each error keeps only where it is, what kind it is and a message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)


def _safe(error: dict[str, Any]) -> dict[str, Any]:
    return {"type": error.get("type"), "loc": list(error.get("loc", ())), "msg": error.get("msg")}


def validation_handler(on_refused: Callable[[str], None]) -> Callable[[Request, Exception], Any]:
    """An exception handler for RequestValidationError: 422, errors without their input, counted."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [_safe(e) for e in exc.errors()]
        fields = [e["loc"] for e in errors]
        log.info("HTTP %s %s : 422, champs refusés %s", request.method, request.url.path, fields)
        on_refused("validation")
        return JSONResponse({"detail": errors}, status_code=422)

    return handle
