"""Static modules every page of the web side shares (the REST client), served at ``/common/static``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def mount_common_static(app: FastAPI) -> None:
    """Add ``/common/static`` to ``app``: public, like each page's own static files."""
    app.mount("/common/static", StaticFiles(directory=STATIC), name="common-static")
