"""How a log line reads, on the dispatcher and on a device: Europe/Paris time, French level.

Shared by ``vigie`` (dispatcher/cli.py), ``vigie-device`` (device/cli.py) and the
demo, so that an operator and a technician read the same thing: the time in
Europe/Paris with its UTC offset whatever the machine's time zone (a server is
often on UTC; the offset settles the hour repeated when clocks go back), the
level in French, the logger, then the message::

    2026-11-27 22:31:05,123+01:00 ATTENTION dispatcher.alerting.mqtt : connexion au broker perdue…

Pure formatting, no handler of its own beyond :func:`configure`'s stream.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final, TextIO
from zoneinfo import ZoneInfo

PARIS: Final = ZoneInfo("Europe/Paris")
FORMAT: Final = "%(asctime)s %(niveau)s %(name)s : %(message)s"
LEVELS: Final = {
    logging.DEBUG: "DÉBOGAGE",
    logging.INFO: "INFO",
    logging.WARNING: "ATTENTION",
    logging.ERROR: "ERREUR",
    logging.CRITICAL: "CRITIQUE",
}


class ParisFormatter(logging.Formatter):
    """:data:`FORMAT`, with the time in Europe/Paris and the level in French."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        # An attribute of our own: record.levelname stays as other handlers (pytest's) expect it.
        record.niveau = LEVELS.get(record.levelno, record.levelname)
        return super().format(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, PARIS)
        if datefmt:
            return moment.strftime(datefmt)
        return moment.isoformat(" ", "milliseconds").replace(".", ",")


def configure(level: int | str, stream: TextIO) -> None:
    """Log to ``stream`` at ``level`` and above with :class:`ParisFormatter` (as ``logging.basicConfig``
    would, once: a root logger that already has handlers is left alone)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ParisFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
