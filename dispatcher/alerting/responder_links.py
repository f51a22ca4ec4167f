"""Responder links: the ``/r/<token>`` an alert SMS carries, minted before the SMS is written.

A link is a random token (``secrets.token_urlsafe``, 128 bits) scoped to one
alert and one contact; the store keeps only its SHA-256, so a copy of the
database or of a backup opens no page. The token is the credential of the
responder page (dispatcher/web/responder/): whoever holds the SMS holds the link.

Where it is minted, and why:

* **with the decision** — :meth:`ResponderLinks.plan` mints one for every SMS
  contact of a transition (purposes that ask to acknowledge) and the engine
  writes its hash in the same transaction as the notification rows: no extra
  commit on the hot path. The plain token stays in this process's memory,
  promoted to "usable" only once that transaction committed
  (:meth:`ResponderLinks.committed`), so an SMS never carries a link whose
  hash was rolled back.
* **at sending time, when memory has none** — after a crash and restart, or
  when another instance claimed the row, the token is gone (only its hash was
  stored): :meth:`ResponderLinks.url_for` mints a new one and commits its hash
  *before* the SMS is rendered. Every link ever sent stays valid, the re-sent
  SMS's too.

A link opens while its alert is open and for ``grace_s`` after it closed
(:func:`link_usable`), so a patrol on its way keeps the address and door code.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from dispatcher.alerting import escalation as esc
from dispatcher.domain import Channel
from dispatcher.store.base import LinkSpec, ResponderLink, ResponderStore, Transition

TOKEN_BYTES = 16  # 128 bits: 22 URL-safe characters, short enough for the SMS budget
#: Notifications whose SMS carries a link: those that ask the contact to act.
LINKED_PURPOSES = frozenset({"alert", "duress_notice"})
CLOSED_STATES = frozenset({"resolved", "cancelled", "false_alarm"})
PATH_PREFIX = "/r/"
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MAX_REMEMBERED = 20_000  # tokens kept in memory (~ the contacts of the alerts of a few hours)


def new_token() -> str:
    """A fresh random token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the store keeps of a token (hex SHA-256: 128 random bits need no slow hash)."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def well_formed(token: str) -> bool:
    """A string that could be a token (anything else is refused without a store read)."""
    return bool(_TOKEN_SHAPE.match(token))


def link_usable(link: ResponderLink, now: datetime, grace_s: float) -> bool:
    """Open alert: yes. Closed: for ``grace_s`` after its closing (its last change)."""
    if link.alert_state not in CLOSED_STATES:
        return True
    return now <= link.alert_updated_at + timedelta(seconds=grace_s)


def needs_link(channel: str, purpose: str) -> bool:
    """An SMS that asks its contact to act carries a link."""
    return channel == Channel.SMS.value and purpose in LINKED_PURPOSES


class ResponderLinks:
    """Mints links and remembers, per (alert, contact), the token this process may put in an SMS."""

    def __init__(
        self, store: ResponderStore, public_base_url: str, *, remember: int = MAX_REMEMBERED
    ) -> None:
        self._store = store
        self._base = public_base_url.rstrip("/")
        self._remember = remember
        self._usable: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._minted: OrderedDict[str, tuple[str, str, str]] = OrderedDict()  # hash -> alert, contact, token

    def url(self, token: str) -> str:
        """The link as the SMS writes it."""
        return f"{self._base}{PATH_PREFIX}{token}"

    def plan(self, alert_id: str, commands: Sequence[esc.Command]) -> tuple[LinkSpec, ...]:
        """Links to write with a transition: one per SMS contact that has no usable token yet."""
        specs: dict[str, LinkSpec] = {}
        for c in commands:
            if not isinstance(c, esc.Notify) or not needs_link(c.channel.value, c.purpose):
                continue
            contact = c.recipient.contact_id
            if contact in specs or (alert_id, contact) in self._usable:
                continue
            token = new_token()
            specs[contact] = LinkSpec(contact, hash_token(token))
            self._minted[specs[contact].token_hash] = (alert_id, contact, token)
            _bound(self._minted, self._remember)
        return tuple(specs.values())

    def committed(self, transitions: Iterable[Transition]) -> None:
        """These transitions are durable: their tokens may now go out in an SMS."""
        for t in transitions:
            for spec in t.links:
                minted = self._minted.pop(spec.token_hash, None)
                if minted is not None:
                    alert_id, contact, token = minted
                    self._usable.setdefault((alert_id, contact), token)
                    _bound(self._usable, self._remember)

    async def url_for(self, alert_id: str, contact_id: str) -> str:
        """The link for this contact's SMS; minted and committed now if this process has none."""
        token = self._usable.get((alert_id, contact_id))
        if token is None:
            token = new_token()
            await self._store.add_responder_link(alert_id, LinkSpec(contact_id, hash_token(token)))
            self._usable[(alert_id, contact_id)] = token
            _bound(self._usable, self._remember)
        return self.url(token)

    def forget(self, alert_id: str) -> None:
        """Drop the tokens of an alert (tests; memory is bounded anyway)."""
        for key in [k for k in self._usable if k[0] == alert_id]:
            del self._usable[key]


def _bound(entries: OrderedDict[Any, Any], size: int) -> None:
    while len(entries) > size:
        entries.popitem(last=False)
