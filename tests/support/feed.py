"""A console feed read message by message, as the page reads it (batches opened)."""

from __future__ import annotations

import json
from collections import deque
from typing import Any
from weakref import WeakKeyDictionary

from dispatcher.web.console.frames import messages_in

# Per connection: the messages of a batch frame not yet handed out, so that two
# helpers reading the same feed one after the other lose nothing between them.
_unread: WeakKeyDictionary[Any, deque[dict[str, Any]]] = WeakKeyDictionary()


async def next_message(ws: Any) -> dict[str, Any]:
    """The next message of the feed on the ``websockets`` connection ``ws`` (waits for a frame)."""
    unread = _unread.setdefault(ws, deque())
    while not unread:
        unread.extend(messages_in(json.loads(await ws.recv())))
    return unread.popleft()
