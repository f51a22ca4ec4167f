"""What the demo terminal tells: each alert's path, the provider's traffic, what the device feels.

The dispatcher is followed from the outside as an operator would see it:
through its live event bus (the console's feed) and the alert's stored
escalation state, never by reaching into the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from device.haptics import Pattern, downlink_pattern
from dispatcher.alerting.escalation import EscalationState
from dispatcher.events import EventBus
from dispatcher.store.base import Store
from protocol.messages import Downlink
from sandbox.twilio_server import TwilioSandbox

FELT = {  # what the practitioner feels (device/haptics.py decides which), in the device's own words
    Pattern.RECEIVED: "une vibration courte — le dispatcher a l'alerte",
    Pattern.TEST_RECEIVED: "courte puis longue — le test est arrivé",
    Pattern.ACKNOWLEDGED: "trois impulsions courtes — un contact a pris l'alerte",
    Pattern.CLOSED: "une impulsion longue — alerte close (résolue, fausse alerte, annulation acceptée)",
    Pattern.CANCEL_REFUSED: "deux impulsions longues — annulation refusée, l'alerte continue",
}
CHANNELS = {"sms": "SMS « 1 »", "voice": "touche 1 pendant l'appel", "console": "console"}


def say(line: str) -> None:
    """One line of the demo terminal, flushed at once (it is often piped to a log)."""
    # One write per line: the device's MQTT thread prints too, and print()
    # writes the text and its newline separately.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def device_felt(device_id: str, downlink: Downlink) -> None:
    """Called from the device's MQTT thread for every verified downlink."""
    pattern = downlink_pattern(downlink.type, "alert")
    felt = FELT.get(pattern, downlink.type) if pattern is not None else "rien"
    say(f"   📳 {device_id} : {felt}")


@dataclass
class _Followed:
    label: str  # "alerte 3 (Dr Claire Fabre, btn-cabinet-boutonnet)"
    pressed_at: float
    seen: tuple[Any, ...] = ()


@dataclass
class AlertWatch:
    """Follows every alert's escalation and prints its turns; counts outcomes for the summary."""

    store: Store
    bus: EventBus
    sandbox: TwilioSandbox
    names: dict[str, str]  # phone -> "(contact name)", from the directory
    followed: dict[str, _Followed] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # alert id -> latest outcome
    _requests_seen: int = 0
    _webhooks_seen: int = 0
    _first_sms: set[str] = field(default_factory=set)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def pressed(self, alert_id: str, label: str) -> None:
        """The demo pressed a device: follow this alert from now on."""
        self.followed[alert_id] = _Followed(label, time.monotonic())
        self.outcomes[alert_id] = "en cours"

    async def run(self) -> None:
        """Print until cancelled."""
        async with self.bus.subscribe() as events:
            while True:
                event = None
                # Not wait_for: on Python 3.11 a cancellation arriving as an event does is lost,
                # and the demo never stopped (its --once test hung once in a while).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        event = await events.get()
                if event is not None:
                    self._print_provider_traffic()  # what the provider saw first: the reply, then "taken"
                    if event.get("kind") == "alert":
                        await self._alert_changed(str(event["alert_id"]))
                self._print_provider_traffic()

    async def _alert_changed(self, alert_id: str) -> None:
        followed = self.followed.get(alert_id)
        if followed is None:
            return  # pressed by hand (make demo-device): the console shows it
        record = await self.store.get_alert(alert_id)
        if record.escalation is None:
            return
        state = EscalationState.from_json(record.escalation)
        key = (state.tier, state.round, state.acked_by, state.exhausted, state.state)
        if key == followed.seen:
            return
        previous, followed.seen = followed.seen, key
        elapsed = time.monotonic() - followed.pressed_at
        self._describe(alert_id, followed, state, previous, elapsed)
        async with self._changed:
            self._changed.notify_all()

    async def wait_outcome(self, alert_id: str, prefix: str) -> None:
        """Wait until the alert's outcome starts with ``prefix`` (bound it with ``asyncio.timeout``)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.outcomes.get(alert_id, "").startswith(prefix))

    def _describe(
        self, alert_id: str, f: _Followed, state: EscalationState, previous: tuple[Any, ...], elapsed: float
    ) -> None:
        if state.acked_by is not None:
            who = self._contact_name(state, state.acked_by)
            how = CHANNELS.get(state.acked_via or "", state.acked_via or "")
            tier = state.tier + 1
            say(f"✅ {f.label} : prise en charge par {who} ({how}) au palier {tier}, {elapsed:.0f} s")
            self.outcomes[alert_id] = f"prise en charge au palier {state.tier + 1}"
        elif state.exhausted:
            say(f"⛔ {f.label} : chaîne épuisée, personne n'a répondu — dernier palier relancé, alarme")
            self.outcomes[alert_id] = "chaîne épuisée"
        elif state.terminal:
            say(f"⬜ {f.label} : close ({state.state.value})")
            self.outcomes[alert_id] = f"close ({state.state.value})"
        elif previous and (state.tier, state.round) != previous[:2]:
            say(f"⏫ {f.label} : personne n'a répondu à temps — palier {state.tier + 1}, {elapsed:.0f} s")
            self.outcomes[alert_id] = f"escalade au palier {state.tier + 1}"

    @staticmethod
    def _contact_name(state: EscalationState, contact_id: str) -> str:
        recipient = state.plan.recipient(contact_id)
        if recipient is None:
            return contact_id
        return f"{recipient.name} ({recipient.unit_name})" if recipient.unit_name else recipient.name

    def _print_provider_traffic(self) -> None:
        for request in self.sandbox.requests[self._requests_seen :]:
            name = self.names.get(request.to or "", "")
            if request.kind == "message":
                body = request.params.get("Body", "")
                if request.ref and request.ref.split("/")[0] not in self._first_sms:
                    self._first_sms.add(request.ref.split("/")[0])
                    say(f"   📱 SMS à {request.to} {name} :\n      " + body.replace("\n", "\n      "))
                else:
                    say(f"   📱 SMS à {request.to} {name}")
            elif request.kind == "call":
                say(f"   📞 appel vers {request.to} {name} (voix française, « appuyez sur 1 »)")
        self._requests_seen = len(self.sandbox.requests)
        for webhook in self.sandbox.webhooks[self._webhooks_seen :]:
            if webhook.kind == "sms":
                sender = webhook.params.get("From", "")
                body = webhook.params.get("Body", "")
                say(f"   💬 {sender} {self.names.get(sender, '')} répond par SMS « {body} »")
            elif webhook.kind == "gather":
                callee, digits = webhook.params.get("To", ""), webhook.params.get("Digits", "")
                say(f"   ☎️  {callee} {self.names.get(callee, '')} appuie sur {digits}")
        self._webhooks_seen = len(self.sandbox.webhooks)

    def summary(self) -> str:
        """One line per outcome, for the end of the run."""
        counts = Counter(self.outcomes.values())
        lines = [f"{len(self.outcomes)} alertes simulées :"]
        lines += [f"  {n:3d} {outcome}" for outcome, n in sorted(counts.items())]
        return "\n".join(lines)
