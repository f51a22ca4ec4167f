"""Runs the escalation state machine: persists each transition, then acts on it.

Order is always: compute (pure) → write state, notification rows and timers in
one transaction → execute the commands (send, downlink, console). After a
crash, :meth:`Engine.recover` finds every pending row and due timer in the
store, so any instance can pick up where the dead one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from dispatcher.alerting import alert_logs
from dispatcher.alerting import escalation as esc
from dispatcher.alerting import notification_logs as nlog
from dispatcher.alerting.alert_context import context_for
from dispatcher.alerting.alert_contexts import AlertContexts
from dispatcher.alerting.cancels import REFUSALS, PinCheck, PinGuard, Verdict
from dispatcher.alerting.delivery import Delivery, parse_notification_reference
from dispatcher.alerting.escalation_plan import DEFAULT_RENOTIFY_S
from dispatcher.alerting.responder_links import ResponderLinks
from dispatcher.alerting.smsreplies import SmsReplies
from dispatcher.alerting.transitions import transition_for
from dispatcher.directory.fallback import route
from dispatcher.directory.location import LocationPolicy
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.domain import (
    AlertContext,
    AlertKind,
    AlertState,
    Channel,
    Convention,
    DownlinkKind,
    ResolvedLocation,
)
from dispatcher.events import EventBus
from dispatcher.live_alerts import after_transition, started_record
from dispatcher.metrics import Metrics
from dispatcher.store.base import (
    Conflict,
    NewAlert,
    NotFound,
    NotificationRecord,
    Store,
    Transition,
)

log = logging.getLogger(__name__)

OPEN_STATES = (AlertState.NOTIFYING.value, AlertState.DURESS.value, AlertState.ACKNOWLEDGED.value)
# Not closed yet: what the vigie_alerts_active gauge counts.
GAUGED_STATES = (AlertState.RECEIVED.value, *OPEN_STATES)
FAILED_STATUSES = frozenset({"failed", "undelivered", "no-answer", "busy", "canceled"})
ALARM_PROVIDER_DOWN = "fournisseur SMS/voix injoignable"
OUTAGE_ALARM_COOLDOWN_S = 600.0
PROVIDER_WAIT = "fournisseur SMS/voix injoignable : notifications en attente, envoyées à son retour"
# Names the provider's outage among the consoles' system alarms (cleared by its end).
PROVIDER_TOPIC = "provider"
PROVIDER_BACK = "fournisseur SMS/voix de nouveau joignable : envoi des notifications en attente"


class DownlinkSender(Protocol):
    """Publishes a signed downlink to a device (the ingest's MQTT side)."""

    def send_downlink(self, device_id: str, kind: DownlinkKind, ref: str) -> None: ...


@dataclass(frozen=True)
class PlannedAlert:
    """A new alert's first transition, ready to be committed with the alert."""

    alert_id: str
    device_id: str
    transition: Transition
    commands: list[esc.Command]
    kind: str | None = None  # stored kind when planning changed it (a test becomes a drill)
    alert: NewAlert | None = None  # what was planned; its record is known once committed


class Engine:
    """Escalation for every alert of this dispatcher instance."""

    def __init__(
        self,
        *,
        store: Store,
        cache: DirectoryCache,
        downlinks: DownlinkSender,
        bus: EventBus,
        metrics: Metrics,
        location_policy: LocationPolicy,
        instance_id: str,
        fallback_contact: esc.Recipient,
        pin_guard: PinGuard | None = None,
        renotify_s: int = DEFAULT_RENOTIFY_S,
        links: ResponderLinks | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._downlinks = downlinks
        self._bus = bus
        self._metrics = metrics
        self._policy = location_policy
        self._owner = instance_id
        self._fallback_contact = fallback_contact
        self._pin_guard = pin_guard or PinGuard()
        self._renotify_s = renotify_s
        self.links = links  # responder links minted with each decision (alerting/responder_links.py)
        self._outage_alarmed_at = -OUTAGE_ALARM_COOLDOWN_S
        self._outage_alarm_open = False
        self._ending_provider_alarm = False  # its end is being stored and told (one end per episode)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._contexts = AlertContexts()  # held encoded past the recent ones (alert_contexts.py)
        self._timer_wakeup = asyncio.Event()
        self._replies = SmsReplies(store, self._ack_by_sms, self.context_of)
        self.delivery: Delivery | None = None

    def attach_delivery(self, delivery: Delivery) -> None:
        self.delivery = delivery

    # -- a new alert ----------------------------------------------------------------

    def plan(self, alert: NewAlert) -> PlannedAlert:
        """Where she is, who is competent, whom to notify first — from memory only."""
        return self.plan_with(alert, context_for(alert, self._cache, self._policy))

    @property
    def deployment_contact(self) -> esc.Recipient:
        """The deployment-wide 24/7 fallback contact (whoever must act when nothing else can)."""
        return self._fallback_contact

    def operator_scope(self, location: ResolvedLocation, at: datetime) -> tuple[str, ...]:
        """Names of the conventions whose operators would see an alert at ``location``."""
        return route(self._cache.current.conventions, location, at, self._fallback_contact).watchers

    def plan_with(self, alert: NewAlert, ctx: AlertContext) -> PlannedAlert:
        """Route and start an alert whose context is already known (device alerts, visit timers)."""
        snap = self._cache.current
        decision = route(snap.conventions, ctx.location, alert.received_at, self._fallback_contact)
        drill = _drill_event(ctx.kind, decision.convention)
        if drill is not None and drill[1]["consent"]:
            ctx = ctx.model_copy(update={"kind": AlertKind.DRILL})
        phone = ctx.practitioner.phones[0] if ctx.practitioner else None
        plan = (
            replace(decision.plan, renotify_s=self._renotify_s, renotify_also=self._fallback_contact)
            if decision.plan
            else None
        )
        state, commands = esc.start(alert.id, ctx.kind, plan, practitioner_phone=phone)
        if decision.reason is not None and ctx.kind in (AlertKind.ALERT, AlertKind.DRILL):
            # Operators must know an alert went to a fallback, and why.
            commands = [*commands, esc.RaiseOperatorAlarm(f"routage de secours : {decision.reason}")]
        if ctx.duress and not state.terminal:
            # Raised under duress (a visit check answered with her duress code): no
            # downlink may tell the device, operators are alarmed at once.
            state = replace(state, state=AlertState.DURESS, duress=True)
            alarm = esc.RaiseOperatorAlarm(f"{ctx.reason or 'alerte'} : réponse sous contrainte")
            commands = [*commands, alarm]
        ctx = ctx.model_copy(
            update={
                "convention_name": decision.convention.name if decision.convention else None,
                "routing_reason": decision.reason,
                "fallback": decision.fallback.value if decision.fallback else None,
                "operator_scope": list(decision.watchers),
            }
        )
        events: list[tuple[str, dict[str, Any]]] = [
            ("located", {"source": ctx.location.source.value, "description": ctx.location.description})
        ]
        if ctx.reason:
            events.insert(0, ("raised", {"reason": ctx.reason, "duress": ctx.duress}))
        events.append(
            (
                "routed",
                {
                    "convention": ctx.convention_name,
                    "notes": list(decision.notes),
                    "fallback": decision.fallback.value if decision.fallback else None,
                    "reason": decision.reason,
                },
            )
        )
        if drill is not None:
            events.append(drill)
        transition = transition_for(0, state, commands, events, context=ctx, links=self.links)
        self._contexts.put(alert.id, ctx)
        kind = ctx.kind.value if ctx.kind.value != alert.kind else None
        return PlannedAlert(alert.id, alert.device_id, transition, commands, kind, alert)

    def links_committed(self, planned: Sequence[PlannedAlert]) -> None:
        """These new alerts are durable: their SMS may carry the links minted with them.

        Called before their claimed sends start (:meth:`after_commit` does it
        again, a no-op then): a send finding no usable link mints and commits
        another one before its SMS.
        """
        if self.links is not None:
            self.links.committed([p.transition for p in planned])

    async def after_commit(self, planned: PlannedAlert, *, claimed: bool = False) -> None:
        """Execute a committed new alert's first commands.

        ``claimed``: its notifications were created claimed with the alert and
        handed to delivery by the caller (:meth:`Delivery.send_claimed`), so no
        claim pass is asked for.
        """
        self._track_state(None, planned.transition.state)
        if self.links is not None:
            self.links.committed([planned.transition])
        if planned.alert is not None:
            record = started_record(planned.alert, planned.kind, planned.transition)
            self._bus.alerts.committed(record, now=time.monotonic())
        version = planned.transition.expected_version + 1
        await self._execute(
            planned.alert_id, planned.device_id, planned.commands, kick=not claimed, version=version
        )

    # -- events on existing alerts ----------------------------------------------------

    async def handle(self, alert_id: str, event: esc.Event, detail: dict[str, Any] | None = None) -> bool:
        """Apply ``event``; return False if it changed nothing."""
        async with self._locks[alert_id]:
            for _ in range(5):
                record = await self._store.get_alert(alert_id)
                if record.escalation is None:
                    log.warning(alert_logs.EVENT_BEFORE_ESCALATION, event, alert_id)
                    return False
                state = esc.EscalationState.from_json(record.escalation)
                new, commands = esc.step(state, event)
                if new is state and not commands:
                    return False
                name = type(event).__name__
                events = [(name, detail or _describe(event))]
                t = transition_for(record.version, new, commands, events, links=self.links)
                try:
                    await self._store.apply_transition(t)
                except Conflict:
                    continue  # another writer (instance) moved it: re-read and re-apply
                self._track_state(record.state, t.state)
                if self.links is not None:
                    self.links.committed([t])
                # The consoles' view gets the new version before any event about it is published.
                self._bus.alerts.committed(after_transition(record, t), now=time.monotonic())
                await self._execute(alert_id, record.device_id, commands, version=t.expected_version + 1)
                return True
        raise Conflict(f"alert {alert_id} kept changing under us")

    async def cancel(self, device_id: str, alert_id: str, pin: str, event_id: str) -> None:
        """A cancel uplink: normal PIN, duress PIN, or refused (wrong PIN, no PIN, too many tries)."""
        try:
            record = await self._store.get_alert(alert_id)
        except NotFound:
            log.warning(alert_logs.CANCEL_UNKNOWN_ALERT, event_id, device_id, alert_id)
            await self._refuse_cancel(device_id, alert_id, Verdict.NO_PIN, "alerte inconnue", known=False)
            return
        if record.device_id != device_id:
            log.warning(alert_logs.CANCEL_OTHER_DEVICE, event_id, alert_id)
            return
        verdict, owner = await self._pin_guard.check(device_id, self._pins_of(device_id, record.context), pin)
        if verdict in (Verdict.NORMAL, Verdict.DURESS):
            detail = {"event_id": event_id, "duress": verdict is Verdict.DURESS, "pin_of": owner}
            await self.handle(alert_id, esc.Cancelled(duress=verdict is Verdict.DURESS), detail)
            return
        await self._refuse_cancel(device_id, alert_id, verdict, REFUSALS[verdict])

    async def _refuse_cancel(
        self, device_id: str, alert_id: str, verdict: Verdict, why: str, *, known: bool = True
    ) -> None:
        """The alert goes on: counted, logged, the device told (it keeps it open), operators alarmed."""
        self._metrics.cancels_refused.labels(verdict.value).inc()
        log.warning(alert_logs.CANCEL_REFUSED, alert_id, device_id, verdict.value, why)
        self._downlinks.send_downlink(device_id, "cancel_refused", alert_id)
        reason = f"annulation refusée ({device_id}) : {why}, l'alerte continue"
        await self._operator_alarm(alert_id if known else None, reason)

    def _pins_of(self, device_id: str, context: dict[str, Any] | None) -> PinCheck:
        """The PINs that may cancel this device's alerts, as the directory has them now."""
        snap = self._cache.current
        stored = context or {}
        device = snap.devices.get(device_id)
        practitioner_id = (stored.get("practitioner") or {}).get("id", "")
        site_id = (stored.get("site") or {}).get("id", "")
        return PinCheck.for_device(device, snap.practitioners.get(practitioner_id), snap.sites.get(site_id))

    async def _execute(
        self,
        alert_id: str,
        device_id: str,
        commands: Sequence[esc.Command],
        *,
        kick: bool = True,
        version: int | None = None,
    ) -> None:
        """Act on committed ``commands``; ``version``: the alert's, just committed (named in its events)."""
        for command in commands:
            match command:
                case esc.SendDownlink(kind=kind):
                    self._downlinks.send_downlink(device_id, kind, alert_id)
                case esc.RaiseOperatorAlarm(reason=reason):
                    await self._operator_alarm(alert_id, reason, persisted=True, version=version)
                case esc.PushConsole():
                    self._bus.publish("alert", alert_id=alert_id, version=version)
                case esc.StartTimer():
                    self._timer_wakeup.set()
        if kick and self.delivery is not None and any(isinstance(c, esc.Notify) for c in commands):
            self.delivery.kick()

    async def _operator_alarm(
        self,
        alert_id: str | None,
        reason: str,
        *,
        persisted: bool = False,
        version: int | None = None,
        topic: str | None = None,
    ) -> None:
        """Tell the operators (event, log, console); ``topic`` names a system alarm (no alert) for its end."""
        self._metrics.operator_alarms.labels(reason[:40]).inc()
        log.error(alert_logs.OPERATOR_ALARM, alert_id, reason)
        try:
            await self._store.add_operator_event("alarm", reason, alert_id=alert_id, topic=topic)
        except Exception:
            log.exception(alert_logs.OPERATOR_ALARM_NOT_STORED, nlog.yes_no(persisted))
        if topic is None:
            self._bus.publish("operator_alarm", alert_id=alert_id, reason=reason, version=version)
        else:
            self._bus.publish("operator_alarm", alert_id=alert_id, reason=reason, topic=topic)

    # -- durable timers ---------------------------------------------------------------

    async def run_timers(self, *, max_sleep_s: float = 1.0) -> None:
        """Fire due timers forever (any instance may claim any timer)."""
        while True:
            if self.delivery is not None:
                # Safety net: rows left 'pending' by a failed claim are picked up
                # within a second even if no new alert or event kicks delivery.
                self.delivery.kick()
            try:
                await self.fire_due_timers()
                next_due = await self._store.next_timer_due()
            except Exception:
                log.exception(alert_logs.TIMER_PASS_FAILED)
                next_due = None
            delay = max_sleep_s if next_due is None else min(max_sleep_s, max(0.0, next_due - time.time()))
            self._timer_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                # Not wait_for: on Python 3.11 it returns instead of raising when a cancellation comes
                # as the event is set, and this loop would then never stop.
                async with asyncio.timeout(delay):
                    await self._timer_wakeup.wait()

    async def fire_due_timers(self) -> None:
        for timer in await self._store.claim_due_timers(self._owner, now=time.time()):
            event = esc.AckTimeout(tier=int(timer.payload["tier"]), round=int(timer.payload["round"]))
            await self.handle(timer.alert_id, event)
            await self._store.delete_timer(timer.id)

    # -- recovery after a crash -------------------------------------------------------

    async def recover(self) -> None:
        """Resume what a crashed instance left: unstarted alerts, pending and lost sends."""
        for record in await self._store.unstarted_alerts():
            log.warning(alert_logs.UNSTARTED, record.id)
            await self._start_stored(record.id)
        for n in await self._store.abandoned_notifications(time.time(), self._owner):
            if n.status == "retry_wait":
                # Every attempt so far provably failed and none was in flight: send it now.
                log.warning(nlog.REQUEUED_AT_RESTART, nlog.channel(n.channel), n.id)
                await self._store.record_notification(n.id, status="pending", error=n.error)
                continue
            # It may have reached the provider: the reconciliation looks it up in
            # the provider's records, adopts it if found and sends it if not.
            log.warning(nlog.UNCERTAIN_AT_RESTART, nlog.channel(n.channel), n.id)
            await self._store.record_notification(
                n.id, status="unknown", error="dispatcher arrêté pendant l'envoi"
            )
        await self._seed_state_gauge()
        if self.delivery is not None:
            self.delivery.kick()
        self._timer_wakeup.set()

    async def _start_stored(self, alert_id: str) -> None:
        record = await self._store.get_alert(alert_id)
        alert = NewAlert(
            id=record.id,
            device_id=record.device_id,
            kind=record.kind,
            seq=record.seq,
            device_ts=record.received_at,
            received_at=record.received_at,
            gesture=record.gesture,
            fix=record.fix,
            raw=b"",
        )
        planned = self.plan(alert)
        await self._store.apply_transition(replace(planned.transition, expected_version=record.version))
        self._track_state(record.state, None)  # after_commit counts the new state
        await self.after_commit(planned)

    # -- the open-alerts gauge (this instance's view) ---------------------------------

    def _track_state(self, old: str | None, new: str | None) -> None:
        """Move one alert between the gauge's states; closed states are not counted."""
        gauge = self._metrics.alerts_by_state
        if old is not None and old in GAUGED_STATES:
            gauge.labels(old).dec()
        if new is not None and new in GAUGED_STATES:
            gauge.labels(new).inc()

    async def _seed_state_gauge(self) -> None:
        """Start the gauge from the store (alerts opened before this process started)."""
        counts: dict[str, int] = dict.fromkeys(GAUGED_STATES, 0)
        for record in await self._store.list_alerts(states=list(GAUGED_STATES), limit=1_000_000):
            counts[record.state] += 1
        for state, count in counts.items():
            self._metrics.alerts_by_state.labels(state).set(count)

    # -- what the provider's webhooks tell us (dispatcher.alerting.webhooks.TwilioInbox) -------

    async def delivery_status(
        self, sid: str, status: str, error_code: str | None, *, ref: str | None = None
    ) -> None:
        if ref is not None and parse_notification_reference(ref) is None:
            # A visit's own SMS (check, fallback contact): no row to look for, its fate is logged.
            level = logging.WARNING if status in FAILED_STATUSES else logging.INFO
            log.log(level, nlog.STATUS_OF_A_VISIT_TEXT, status, ref, sid)
            return
        n = await self._notification_for(sid, ref)
        if n is None:
            log.warning(nlog.STATUS_UNKNOWN_SID, status, sid, ref)
            return
        # The SID goes with the status: a row whose SID was never stored (a crash
        # between the request and its commit) adopts it from the callback.
        if self.delivery is not None:  # grouped with the other outcomes (one commit)
            await self.delivery.record(n.id, status=status, provider_sid=sid, error=error_code)
        else:  # like the outcomes: a status never goes back (dispatcher.alerting.status_order)
            await self._store.record_notifications([(n.id, status, sid, error_code)])
        self._bus.publish("alert", alert_id=n.alert_id)
        if status in FAILED_STATUSES:
            await self.notification_failed(n)

    async def _notification_for(self, sid: str, ref: str | None) -> NotificationRecord | None:
        """The notification a callback is about: by our reference, else by the provider's SID."""
        if self.delivery is not None and (n := self.delivery.sent_with_sid(sid)) is not None:
            return n
        if ref is not None and (n := await self._notification_by_ref(ref)) is not None:
            return n
        return await self._notification_by_sid(sid)

    async def _notification_by_ref(self, ref: str, wait_s: float = 3.0) -> NotificationRecord | None:
        """The row named by ``alert id/notification id``, once its send is no longer in flight.

        The provider may call back before the send's own outcome is stored:
        wait a little while the row is still 'sending' (polling the store: the
        sender may be another instance), so that the outcome's SID is stored
        first. Past the wait (the sender died, or its answer is slow), the
        callback is recorded anyway; a later 'queued' cannot undo it, the store
        never takes a status back (:mod:`dispatcher.alerting.status_order`).
        """
        if (named := parse_notification_reference(ref)) is None:
            return None
        alert_id, number = named
        deadline = time.monotonic() + wait_s
        while True:
            rows = [n for n in await self._store.notifications_for(alert_id) if n.id == number]
            if not rows or rows[0].status != "sending" or time.monotonic() >= deadline:
                return rows[0] if rows else None
            await asyncio.sleep(0.05)

    async def _notification_by_sid(self, sid: str, wait_s: float = 3.0) -> NotificationRecord | None:
        """The notification behind a provider SID (callbacks without our reference).

        Waiting a little: the provider may call back before the SID it just
        returned is stored. Polling the store (not an in-process event) because
        behind a load balancer the instance that sent the request may not be
        the one called back.
        """
        deadline = time.monotonic() + wait_s
        while (n := await self._store.notification_by_sid(sid)) is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return n

    async def notification_failed(self, n: NotificationRecord) -> None:
        event = esc.DeliveryFailed(
            contact_id=n.contact_id, channel=Channel(n.channel), tier=n.tier, round=n.round
        )
        await self.handle(n.alert_id, event)

    async def claim_sms(self, message_sid: str) -> bool:
        """First time this inbound SMS is seen (a replayed webhook is not): see alerting.smsreplies."""
        return await self._replies.claim(message_sid)

    async def sms_reply(self, from_number: str, body: str) -> str | None:
        """A responder's SMS: the alert it names, by its reply code (see dispatcher.alerting.smsreplies)."""
        return await self._replies.answer(from_number, body)

    async def _ack_by_sms(self, alert_id: str, phone: str) -> bool:
        contact = await self._contact_for_phone(alert_id, phone)
        return await self.handle(alert_id, esc.Acknowledged(by=contact, via="sms"))

    async def call_keypress(
        self, call_sid: str, from_number: str, digits: str, *, ref: str | None = None
    ) -> bool:
        """A responder pressed keys during an alert call; True when that acknowledged the alert.

        The call is found by our reference (the Gather action URL carries it),
        so the keypress counts even if the call's SID was never stored, and
        whatever state the notification row is in: the alert's state alone
        decides (the state machine takes an acknowledgement of an open alert).
        """
        if not digits.startswith("1"):
            return False
        n = await self._notification_for(call_sid, ref)
        if n is None:
            log.warning(nlog.KEYPRESS_UNKNOWN_CALL, call_sid, ref)
            return False
        return await self.handle(n.alert_id, esc.Acknowledged(by=n.contact_id, via="voice"))

    async def provider_outage(self, down: bool, detail: str) -> None:
        """The SMS/voice provider stopped (one alarm per outage) or answered (``down`` False).

        A provider failing on and off (or failing for one number only) would
        raise an alarm per flap: after an alarm, the next one waits
        :data:`OUTAGE_ALARM_COOLDOWN_S`.
        """
        now = time.monotonic()
        if down:
            if now - self._outage_alarmed_at >= OUTAGE_ALARM_COOLDOWN_S:
                self._outage_alarmed_at = now
                self._outage_alarm_open = True
                await self._operator_alarm(None, f"{ALARM_PROVIDER_DOWN} ({detail})", topic=PROVIDER_TOPIC)
            return
        # Told after every answer: ends the alarm this instance raised, or one another instance
        # raised and can no longer end (it died, or sends nothing now), lest it stay on the
        # consoles of this one.
        # Answers come concurrently (an alert's SMS and call): one of them ends the episode.
        if self._ending_provider_alarm or not (
            self._outage_alarm_open or PROVIDER_TOPIC in self._bus.system_alarms
        ):
            return
        self._outage_alarm_open, self._ending_provider_alarm = False, True
        try:
            await self._store.add_operator_event("provider", PROVIDER_BACK, topic=PROVIDER_TOPIC)
        finally:  # the consoles are told even if the store is not (stored first: their list shows it)
            self._bus.publish("system", topic=PROVIDER_TOPIC, cleared=PROVIDER_BACK)
            self._ending_provider_alarm = False

    async def notification_waiting(self, alert_id: str) -> None:
        """Show on the console that this alert's notifications wait for the provider (no new alarm)."""
        await self._store.add_operator_event("provider", PROVIDER_WAIT, alert_id=alert_id)
        self._bus.publish("operator_alarm", alert_id=alert_id, reason=PROVIDER_WAIT)

    async def _contact_for_phone(self, alert_id: str, phone: str) -> str:
        for n in await self._store.notifications_for(alert_id):
            if n.phone == phone:
                return n.contact_id
        return phone

    # -- what delivery needs ------------------------------------------------------------

    async def context_of(self, alert_id: str) -> AlertContext:
        """Who, where, when: fixed at the alert's start (duress and actors come with each notification)."""
        ctx = self._contexts.get(alert_id)
        if ctx is None:
            record = await self._store.get_alert(alert_id)
            ctx = AlertContext.model_validate(record.context)
            self._contexts.put(alert_id, ctx)
        return ctx

    def forget(self, alert_id: str) -> None:
        """Drop cached context of a closed alert."""
        self._contexts.forget(alert_id)
        self._locks.pop(alert_id, None)


def _drill_event(kind: AlertKind, convention: Convention | None) -> tuple[str, dict[str, Any]] | None:
    """A test becomes a drill of the real chain only where the convention consented (``drills: true``)."""
    if kind is not AlertKind.TEST:
        return None
    consent = convention is not None and convention.drills
    return "drill", {"consent": consent, "convention": convention.name if convention else None}


def _describe(event: esc.Event) -> dict[str, Any]:
    """JSON-able detail of an event for the alert's timeline."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(event).items()}
