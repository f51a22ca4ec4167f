"""Inbound SMS from responders: which alert a "1" acknowledges, and what we answer.

Rules (docs/lifecycle.md § SMS replies):

* a replayed webhook (a ``MessageSid`` already seen) does nothing and gets no answer
  (:meth:`SmsReplies.claim`, called by the webhook before any branch — visit checks included);
* ``1 K42`` acknowledges the open alert with reply code K42 that notified this
  phone — exactly that one; an unknown or (rarely) ambiguous code acknowledges
  nothing and the answer lists the codes to use;
* a bare ``1`` acknowledges only when exactly one alert that notified this
  phone is waiting for an acknowledgement; with several, the answer lists
  their codes — never a guess;
* anything else: a short reminder of how to answer.

Answers are GSM-7 French, one or two segments.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dispatcher.alerting import notification_logs as nlog
from dispatcher.alerting.gsm7 import to_gsm7
from dispatcher.alerting.replycodes import parse_reply, reply_code
from dispatcher.alerting.texts import local_time
from dispatcher.domain import AlertContext, AlertState
from dispatcher.store.base import Store

log = logging.getLogger(__name__)

# Waiting for a human: a bare "1" may only land on one of these.
AWAITING_ACK = (AlertState.NOTIFYING.value, AlertState.DURESS.value)
# Still open: a coded "1" on an acknowledged one is answered "already taken".
OPEN = (*AWAITING_ACK, AlertState.ACKNOWLEDGED.value)
HOW_TO_REPLY = "Vigie : pour prendre en charge, repondez 1 suivi du code de l'alerte (ex. 1 K42)."
MAX_LISTED = 5  # codes listed in one answer (keeps it within two segments)

Acknowledge = Callable[[str, str], Awaitable[bool]]  # (alert_id, phone) -> changed?
ContextOf = Callable[[str], Awaitable[AlertContext]]


def _who(ctx: AlertContext) -> str:
    if ctx.practitioner is not None:
        return ctx.practitioner.display_name
    return ctx.site.name if ctx.site else ctx.device.label or ctx.device.id


@dataclass(frozen=True, slots=True)
class _Open:
    alert_id: str
    code: str
    state: str


class SmsReplies:
    """Decides what an inbound SMS acknowledges; the engine applies it."""

    def __init__(self, store: Store, acknowledge: Acknowledge, context_of: ContextOf) -> None:
        self._store = store
        self._acknowledge = acknowledge
        self._context_of = context_of

    async def answer(self, from_number: str, body: str) -> str:
        """Handle one inbound SMS (already claimed); the text to answer with."""
        reply = parse_reply(body)
        if not reply.acknowledges:
            return to_gsm7(HOW_TO_REPLY)
        open_alerts = await self._open_alerts(from_number)
        if reply.code is not None:
            return await self._coded(from_number, reply.code, open_alerts)
        return await self._bare(from_number, open_alerts)

    async def claim(self, message_sid: str) -> bool:
        """Record the SMS's provider id; False for a replay (or a request without an id): do nothing."""
        if not message_sid:
            log.warning(nlog.SMS_WITHOUT_SID)
            return False
        if not await self._store.claim_inbound_message(message_sid, datetime.now(UTC)):
            log.warning(nlog.SMS_REPLAYED, message_sid)
            return False
        return True

    async def _open_alerts(self, phone: str) -> list[_Open]:
        ids = await self._store.open_alerts_for_phone(phone, OPEN)
        alerts = []
        for alert_id in ids:
            record = await self._store.get_alert(alert_id)
            alerts.append(_Open(alert_id, reply_code(alert_id), record.state))
        return alerts

    async def _coded(self, phone: str, code: str, open_alerts: Sequence[_Open]) -> str:
        named = [a for a in open_alerts if a.code == code]
        if len(named) > 1:
            log.warning(nlog.REPLY_CODE_AMBIGUOUS, code, phone, len(named))
            return to_gsm7(
                f"Vigie : le code {code} designe plusieurs alertes. Prenez en charge par l'appel "
                "(touche 1) ou appelez la console."
            )
        if not named:
            waiting = [a for a in open_alerts if a.state in AWAITING_ACK]
            head = f"Vigie : aucune alerte en cours avec le code {code} pour ce numero."
            return to_gsm7(head + (" " + await self._choices(waiting) if waiting else ""))
        return await self._ack(named[0], phone)

    async def _bare(self, phone: str, open_alerts: Sequence[_Open]) -> str:
        waiting = [a for a in open_alerts if a.state in AWAITING_ACK]
        if len(waiting) == 1:
            return await self._ack(waiting[0], phone)
        if not waiting:
            if open_alerts:
                return to_gsm7("Vigie : l'alerte est deja prise en charge. Merci.")
            return to_gsm7("Vigie : aucune alerte en cours pour ce numero.")
        head = f"Vigie : {len(waiting)} alertes en cours, rien n'est pris en charge."
        return to_gsm7(f"{head} {await self._choices(waiting)}")

    async def _ack(self, alert: _Open, phone: str) -> str:
        if alert.state in AWAITING_ACK and await self._acknowledge(alert.alert_id, phone):
            return to_gsm7(f"Vigie : prise en charge de l'alerte {alert.code} enregistree. Merci.")
        return to_gsm7(f"Vigie : l'alerte {alert.code} est deja prise en charge. Merci.")

    async def _choices(self, waiting: Sequence[_Open]) -> str:
        """'Repondez 1 K42 (Claire Fabre, 14:05) ou 1 B17 (MMG Nord, 14:07).'"""
        parts = []
        for alert in waiting[:MAX_LISTED]:
            ctx = await self._context_of(alert.alert_id)
            parts.append(f"1 {alert.code} ({_who(ctx)}, {local_time(ctx.received_at)})")
        return "Repondez " + " ou ".join(parts) + "."
