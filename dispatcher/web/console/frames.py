"""How the console feed's messages travel: one WebSocket frame per batch (pure).

The feed answers its waiting events in batches (``routes.ConsoleFeed``). At
100 alerts/s a batch holds several alerts' summaries, and each frame costs
the dispatcher a frame build and a socket write on the event
loop the alert path shares. A batch therefore goes out as one frame.

Invariants (tests/console/test_frames.py):

* a lone message travels as itself, so that a quiet feed looks as it always
  did: ``{"type": "alert", …}``;
* two or more travel as ``{"type": "batch", "messages": [...]}``, in order;
* nothing is sent for no message;
* ``messages_in`` gives back exactly the messages framed, in order: the page
  and every client read frames through it (or its twin in ``console.js``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["BATCH", "frame_of", "messages_in"]

BATCH = "batch"


def frame_of(messages: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The one frame carrying ``messages`` (None when there is nothing to say)."""
    if not messages:
        return None
    if len(messages) == 1:
        return messages[0]
    return {"type": BATCH, "messages": list(messages)}


def messages_in(frame: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The feed's messages that ``frame`` carries, in the order they were framed."""
    if frame.get("type") == BATCH:
        return list(frame["messages"])
    return [dict(frame)]
