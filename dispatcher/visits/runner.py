"""The I/O shell around :mod:`dispatcher.visits.timer`: rows, SMS, alerts, audit.

Order is always the escalation engine's: compute (pure) → write the timer row
with its due time, the visit record it mirrors and, when the machine says so,
the alert it raises, in ONE transaction → then act (check SMS, console, audit,
first notifications of the alert). Any instance claims due rows with a lease,
so a visit left open by a dispatcher killed with -9 is resumed by the next one.

The visit's own SMS (the check, the text to the fallback contact) are written
into a durable outbox in that same transaction, then leave in the background
(:mod:`dispatcher.visits.side_sms`): a provider that hangs does not hold the
timers' pass, hence another visit's alert, and a crash between the commit and
the request does not lose them (the next start, or another instance once the
lease ran out, takes them up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dispatcher.alerting import texts
from dispatcher.alerting.engine import Engine, PlannedAlert
from dispatcher.alerting.notifier import TwilioNotifier
from dispatcher.audit import Auditor
from dispatcher.directory.loader import verify_pin
from dispatcher.directory.location import LocationPolicy, known_places, resolve_location
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.domain import (
    AlertContext,
    AlertKind,
    Device,
    DeviceState,
    HomeVisit,
    Practitioner,
)
from dispatcher.events import EventBus
from dispatcher.settings import VisitSettings
from dispatcher.store.base import (
    Conflict,
    NewAlert,
    NotFound,
    SideTextRecord,
    StepAlarm,
    Store,
    VisitTimerRecord,
    VisitTimerWrite,
    server_alert,
)
from dispatcher.visits import side_sms
from dispatcher.visits import timer as vt
from dispatcher.visits.alert_device import alert_device
from dispatcher.visits.side_sms import SideSms
from dispatcher.web.auth import User

log = logging.getLogger(__name__)

#: How long after an alert raised by a visit her other alerts are still located there.
HOLD_AFTER_ALERT_S = 3600
UNFINISHED = ("open", "checking")
#: How long the text to the fallback contact is tried again while the provider is down.
FALLBACK_TEXT_WINDOW_S = 3600.0
#: The end of a check SMS's reference (the visit's id before it).
CHECK_SUFFIX = "-check"
#: How often the timers' pass looks for outbox texts whose sender's lease ran out.
RESUME_TEXTS_EVERY_S = 15.0


@dataclass(frozen=True)
class Actor:
    """Who caused an event (None user: the system itself, or an SMS)."""

    user: User | None = None
    ip: str | None = None
    via: str = "page"


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def words(text: str) -> list[str]:
    """Lower-case words without accents or punctuation: 'Oui !' -> ['oui']."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "".join(c if c.isalnum() else " " for c in plain).split()


class VisitTimers:
    """Declares visits, moves their timers, raises their alerts."""

    def __init__(
        self,
        *,
        store: Store,
        cache: DirectoryCache,
        engine: Engine,
        notifier: TwilioNotifier,
        bus: EventBus,
        settings: VisitSettings,
        location_policy: LocationPolicy,
        instance_id: str,
    ) -> None:
        self._store = store
        self._cache = cache
        self._engine = engine
        self.sms = SideSms(notifier, store, owner=instance_id, wanted=self._text_still_wanted)
        self._bus = bus
        self.settings = settings
        self._policy = location_policy
        self._owner = instance_id
        self._audit = Auditor(store)
        self._wakeup = asyncio.Event()
        self._texts_resumed_at: float | None = None  # time.monotonic() of the last outbox claim
        self._started_at = time.time()  # its outbox rows older than this are its previous run's

    # -- declaring and acting on a visit ------------------------------------------------

    async def declare(self, visit: HomeVisit, duration_s: int, actor: Actor) -> vt.VisitTimerState:
        """Store a new visit, open from now for ``duration_s``, with its durable timer."""
        now = time.time()
        visit = visit.model_copy(update={"starts_at": _dt(now), "ends_at": _dt(now + duration_s)})
        state, commands = vt.start(
            visit.id, visit.practitioner_id, now=now, duration_s=duration_s, grace_s=self.settings.grace_s
        )
        await self._store.write_visit_timer(
            VisitTimerWrite(
                visit_id=visit.id,
                practitioner_id=visit.practitioner_id,
                phase=state.phase,
                due_at=state.due_at,
                state=state.to_json(),
                expected_version=0,
                visit=visit,
            )
        )
        await self._cache.refresh()  # an alert during this visit must find it right away
        await self._act(state, commands, None, actor)
        return state

    def device_warning(self, practitioner_id: str) -> str | None:
        """The French warning her declaration returns when she has no device at all: a missed
        check-in then raises no alert, only an operator alarm (None when she has one)."""
        return None if self.devices_of(practitioner_id) else texts.VISIT_WITHOUT_DEVICE_WARNING

    async def apply(
        self, visit_id: str, event: vt.Event, actor: Actor
    ) -> tuple[vt.VisitTimerState, str | None]:
        """Feed ``event`` to the visit's machine; returns the state and the reply to send her."""
        for _ in range(5):
            record = await self._store.get_visit_timer(visit_id)
            state = vt.VisitTimerState.from_json(record.state)
            new, commands = vt.step(state, event)
            if new is state:
                return state, None
            visit = await self._visit(record)
            raising = any(isinstance(c, vt.RaiseAlert) for c in commands)
            device = await self._alert_device(record.practitioner_id) if raising else None
            write, synced, planned = self._write_for(record, new, commands, visit, device)
            try:
                alarm_id = await self._store.write_visit_timer(write)
            except Conflict:
                continue  # another instance (or request) moved it: re-read and re-apply
            if synced is not None:
                await self._cache.refresh()
            for text in write.texts:  # committed: they leave now, beside this pass
                self.sms.send(text)
            if write.alarm is not None:  # stored: the consoles open now are told at once
                self._publish_alarm(write.alarm, alarm_id)
            reply = await self._act(new, commands, planned, actor)
            return new, reply
        raise Conflict(f"visit timer {visit_id} kept changing under us")

    async def _visit(self, record: VisitTimerRecord) -> HomeVisit | None:
        visits = await self._store.list_visits(record.practitioner_id)
        return next((v for v in visits if v.id == record.visit_id), None)

    def _write_for(
        self,
        record: VisitTimerRecord,
        new: vt.VisitTimerState,
        commands: list[vt.Command],
        visit: HomeVisit | None,
        device: Device | None,
    ) -> tuple[VisitTimerWrite, HomeVisit | None, PlannedAlert | None]:
        synced = None
        for c in commands:
            if isinstance(c, vt.SyncVisit) and visit is not None:
                checked_out = _dt(c.checked_out_at) if c.checked_out_at is not None else None
                synced = visit.model_copy(update={"ends_at": _dt(c.ends_at), "checked_out_at": checked_out})
        raise_alert = next((c for c in commands if isinstance(c, vt.RaiseAlert)), None)
        raised = None
        located = synced or visit
        if raise_alert is not None and located is not None:
            if not raise_alert.duress:
                # Her other alerts keep being located at the visit for a while: she may still be
                # there. After a duress answer the record is left untouched instead (its declared
                # end plus the overrun still locates her), so that nothing differs from an OK.
                held = max(new.ends_at, time.time()) + HOLD_AFTER_ALERT_S
                synced = located = located.model_copy(update={"ends_at": _dt(held), "checked_out_at": None})
            raised = self._plan_alert(located, raise_alert, device)
        not_raised = raise_alert if raise_alert is not None and raised is None else None
        side_texts = self._texts_for(new, commands, located, not_raised)
        alarm = self._step_alarm(new, located, not_raised) if not_raised is not None else None
        write = VisitTimerWrite(
            visit_id=record.visit_id,
            practitioner_id=record.practitioner_id,
            phase=new.phase,
            due_at=new.due_at,
            state=new.to_json(),
            expected_version=record.version,
            visit=synced,
            alert=raised.alert if raised else None,
            first=raised.planned.transition if raised else None,
            texts=side_texts,
            alarm=alarm,
        )
        return write, synced, raised.planned if raised else None

    # -- the alert a visit raises -------------------------------------------------------

    def devices_of(self, practitioner_id: str) -> list[Device]:
        """All her devices in the directory, whatever their state."""
        return [d for d in self._cache.current.devices.values() if d.practitioner_id == practitioner_id]

    async def _alert_device(self, practitioner_id: str) -> Device | None:
        """Her device the visit's alert is filed under (an alert row names one), chosen by
        :func:`dispatcher.visits.alert_device.alert_device`: an ACTIVE one first, even when
        all of hers were suspended, revoked or replaced since she declared (the device only
        identifies the alert, which is routed and escalated like any other). None only when
        she has no device at all."""
        mine = self.devices_of(practitioner_id)
        # With a single device there is nothing to order: no store read.
        seen = await self._last_seen([d.id for d in mine]) if len(mine) > 1 else {}
        device = alert_device(mine, seen)
        if device is not None and device.state is not DeviceState.ACTIVE:
            log.warning(
                "alerte de visite du praticien %s rattachée à sa balise %s (%s) faute de balise active :"
                " l'alerte est routée et escaladée normalement",
                practitioner_id,
                device.id,
                device.state.value,
            )
        return device

    async def _last_seen(self, device_ids: list[str]) -> dict[str, datetime]:
        """When each of these devices was last heard; {} if the store cannot say: the order is
        only a preference, the alert must be raised anyway."""
        try:
            return await self._store.device_last_seen(device_ids)
        except Exception:
            log.exception(
                "dernier contact des balises %s illisible : alerte de visite rattachée sans cet ordre",
                ", ".join(device_ids),
            )
            return {}

    def _plan_alert(self, visit: HomeVisit, command: vt.RaiseAlert, device: Device | None) -> _Raised | None:
        snap = self._cache.current
        practitioner = snap.practitioners.get(visit.practitioner_id)
        if practitioner is None or device is None:
            log.error(
                "visite %s : le praticien %s n'a aucune balise (ou est absent de l'annuaire) pour y"
                " rattacher l'alerte ; ALERTE NON DÉCLENCHÉE, police non prévenue : l'opérateur doit"
                " l'appeler et prévenir la police",
                visit.id,
                visit.practitioner_id,
            )
            return None
        now = datetime.now(UTC)
        gesture = "visit_duress" if command.duress else "visit_timer"
        alert = server_alert(
            f"{visit.id}-alerte", device.id, kind=AlertKind.ALERT.value, gesture=gesture, at=now
        )
        location = resolve_location(
            fix=None, now=now, visit=visit, known_places=known_places(visits=[visit]), policy=self._policy
        )
        ctx = AlertContext(
            alert_id=alert.id,
            kind=AlertKind.ALERT,
            received_at=now,
            practitioner=practitioner,
            device=device,
            location=location,
            reason=command.reason,
            duress=command.duress,
        )
        return _Raised(alert, self._engine.plan_with(alert, ctx))

    # -- after the commit ---------------------------------------------------------------

    async def _act(
        self,
        state: vt.VisitTimerState,
        commands: list[vt.Command],
        planned: PlannedAlert | None,
        actor: Actor,
    ) -> str | None:
        reply = None
        for c in commands:
            match c:
                case vt.SendCheck():
                    pass  # written to the outbox with the step, and on its way (apply)
                case vt.RaiseAlert():
                    await self._after_alert(planned)
                case vt.Record(action=action, detail=detail):
                    await self._record(state, action, dict(detail), actor)
                case vt.Reply(text=text):
                    reply = text
        if state.due_at is not None:
            self._wakeup.set()
        self._bus.publish("visit", visit_id=state.visit_id, practitioner_id=state.practitioner_id)
        return reply

    def _texts_for(
        self,
        state: vt.VisitTimerState,
        commands: list[vt.Command],
        visit: HomeVisit | None,
        not_raised: vt.RaiseAlert | None,
    ) -> tuple[SideTextRecord, ...]:
        """The SMS this step decides, for the outbox: the check, the text to the fallback contact."""
        found = [self._check_text(state, c.deadline) for c in commands if isinstance(c, vt.SendCheck)]
        if not_raised is not None:
            found.append(self._fallback_text(state, visit, not_raised))
        return tuple(t for t in found if t is not None)

    async def _text_still_wanted(self, text: SideTextRecord) -> bool:
        """A check only while her visit still waits for that very answer (not once she closed or
        extended it); the fallback contact's text always."""
        visit_id = text.reference.removesuffix(CHECK_SUFFIX)
        if visit_id == text.reference:
            return True
        try:
            record = await self._store.get_visit_timer(visit_id)
        except NotFound:
            return False
        deadline = record.state.get("check_deadline")
        # The same check: checks of one visit are at least a grace period (≥ 1 s) apart.
        return record.phase == "checking" and deadline is not None and abs(deadline - text.not_after) < 0.5

    def _outbox_row(
        self, reference: str, phone: str, body: str, what: str, not_after: float
    ) -> SideTextRecord:
        """A new outbox row, leased to this instance, which sends it once the step is committed."""
        return SideTextRecord(
            key=uuid.uuid4().hex,
            reference=reference,
            phone=phone,
            body=body,
            what=what,
            not_after=not_after,
            lease_owner=self._owner,
            lease_until=time.time() + side_sms.LEASE_S,
        )

    def _check_text(self, state: vt.VisitTimerState, deadline: float) -> SideTextRecord | None:
        practitioner = self._cache.current.practitioners.get(state.practitioner_id)
        if practitioner is None or not practitioner.phones:
            log.error(
                "visite %s : praticien %s absent de l'annuaire (ou sans téléphone), SMS de vérification"
                " non envoyé",
                state.visit_id,
                state.practitioner_id,
            )
            return None
        return self._outbox_row(
            f"{state.visit_id}{CHECK_SUFFIX}",
            practitioner.phones[0],
            texts.visit_check_sms(_dt(deadline)),
            f"visite {state.visit_id} : SMS de vérification",
            deadline,  # worth nothing once the alert is due
        )

    async def _after_alert(self, planned: PlannedAlert | None) -> None:
        if planned is None:
            return  # no device to file it under: the alarm and the fallback text went with the step
        await self._engine.after_commit(planned)

    def _step_alarm(
        self, state: vt.VisitTimerState, visit: HomeVisit | None, command: vt.RaiseAlert
    ) -> StepAlarm:
        """No device to file her alert under: an alarm for the operators of the visit's territory
        (those who would have seen the alert), on their consoles until one of them handles it;
        written with the step, so that no crash comes between the two."""
        practitioner = self._cache.current.practitioners.get(state.practitioner_id)
        reason = texts.visit_alert_not_raised(
            command.reason,
            state.practitioner_id,
            name=practitioner.display_name if practitioner else None,
            phone=practitioner.phones[0] if practitioner and practitioner.phones else None,
            duress=command.duress,
        )
        return StepAlarm(reason, self._alarm_scope(visit))

    def _publish_alarm(self, alarm: StepAlarm, event_id: int | None) -> None:
        scope = list(alarm.scope)
        self._bus.publish(
            "operator_alarm", alert_id=None, reason=alarm.message, scope=scope, event_id=event_id
        )

    def _fallback_text(
        self, state: vt.VisitTimerState, visit: HomeVisit | None, command: vt.RaiseAlert
    ) -> SideTextRecord:
        """The alarm by SMS to the deployment's 24/7 fallback contact: a console may be unattended."""
        practitioner = self._cache.current.practitioners.get(state.practitioner_id)
        contact = self._engine.deployment_contact
        body = texts.visit_alert_not_raised_sms(
            command.reason,
            practitioner.display_name if practitioner else state.practitioner_id,
            practitioner.phones[0] if practitioner and practitioner.phones else None,
            visit.address if visit else None,
            duress=command.duress,
        )
        what = f"visite {state.visit_id} : alerte non déclenchée, SMS au contact de secours {contact.phone}"
        return self._outbox_row(
            f"{state.visit_id}-secours", contact.phone, body, what, time.time() + FALLBACK_TEXT_WINDOW_S
        )

    def _alarm_scope(self, visit: HomeVisit | None) -> tuple[str, ...]:
        """The conventions that would see her alert; every one when the visit is not known."""
        conventions = self._cache.current.conventions
        if visit is None:
            return tuple(c.name for c in conventions)
        now = datetime.now(UTC)
        location = resolve_location(
            fix=None, now=now, visit=visit, known_places=known_places(visits=[visit]), policy=self._policy
        )
        return self._engine.operator_scope(location, now) or tuple(c.name for c in conventions)

    async def _record(
        self, state: vt.VisitTimerState, action: str, detail: dict[str, Any], actor: Actor
    ) -> None:
        await self._audit.record(
            actor.user,
            action,
            target_kind="visit",
            target_id=state.visit_id,
            ip=actor.ip,
            **{"practitioner_id": state.practitioner_id, "via": actor.via, **detail},
        )

    # -- check replies by SMS (dispatcher.alerting.webhooks) --------------------------------------

    async def check_reply(self, from_number: str, body: str) -> str | None:
        """Her answer to a check; None when it is not one (the responders' path takes it).

        A reply from a number that is no practitioner's, or from a practitioner
        with no open visit, is ignored and logged. An empty string means
        "handled, answer nothing".
        """
        practitioners = [p for p in self._cache.current.practitioners.values() if from_number in p.phones]
        said = words(body)
        looks_ok = bool(set(said) & {w for word in self.settings.ok_words for w in words(word)})
        if not practitioners:
            if looks_ok:
                log.warning(
                    "réponse à une vérification de visite depuis un numéro inconnu %s : ignorée",
                    from_number,
                )
            return None
        timers = [
            t
            for p in practitioners
            for t in await self._store.list_visit_timers(practitioner_id=p.id, phases=UNFINISHED, limit=1)
        ]
        if not timers:
            if looks_ok:
                log.warning(
                    "réponse à une vérification de visite de %s, sans visite en cours : ignorée",
                    from_number,
                )
                return ""
            return None
        practitioner = next(p for p in practitioners if p.id == timers[0].practitioner_id)
        duress = await self._is_duress(practitioner, said)
        if not duress and not looks_ok:
            return "Vigie : repondez OK pour cloturer votre visite."
        event = vt.CheckOut(now=time.time(), via="sms", duress=duress)
        _, reply = await self.apply(timers[0].visit_id, event, Actor(via="sms"))
        return reply or ""

    async def _is_duress(self, practitioner: Practitioner, said: list[str]) -> bool:
        configured = {" ".join(words(w)) for w in self.settings.duress_words}
        if configured & set(said) or " ".join(said) in configured:
            return True
        pin_hash = practitioner.duress_pin_hash
        for word in said:
            if pin_hash and word.isalnum() and await asyncio.to_thread(verify_pin, pin_hash, word):
                return True
        return False

    # -- durable timers ---------------------------------------------------------------

    async def run(self) -> None:
        """Fire due visit timers forever (any instance may claim any row)."""
        while True:
            try:
                await self.resume_texts()
            except Exception:  # the timers come first: they fire all the same
                log.exception("reprise des SMS de visite en attente en échec ; nouvel essai")
            try:
                await self.fire_due()
                next_due = await self._store.next_visit_timer_due()
            except Exception:
                log.exception("passage des minuteries de visite en échec ; nouvel essai")
                next_due = None
            poll = self.settings.poll_s
            delay = poll if next_due is None else min(poll, max(0.0, next_due - time.time()))
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for (see Engine's timer loop)
                    await self._wakeup.wait()

    async def resume_texts(self) -> None:
        """Every ``RESUME_TEXTS_EVERY_S``: outbox texts whose sender is gone (its lease ran out,
        or this instance's previous run, at its first pass) are taken up here."""
        first = self._texts_resumed_at is None
        if not first and time.monotonic() - (self._texts_resumed_at or 0.0) < RESUME_TEXTS_EVERY_S:
            return
        now = time.time()
        # At the first pass, its own rows written before this run started: nobody sends them.
        own_before = self._started_at if first else None
        rows = await self._store.claim_side_texts(
            self._owner, now=now, lease_s=side_sms.LEASE_S, own_before=own_before
        )
        self._texts_resumed_at = time.monotonic()  # after the claim: a failed first pass is the first again
        await self.sms.resume(rows, now=now)

    async def fire_due(self) -> None:
        for record in await self._store.claim_due_visit_timers(self._owner, now=time.time()):
            try:
                await self.apply(record.visit_id, vt.TimerFired(now=time.time()), Actor(via="timer"))
            except Exception:
                # One visit's failure must not hold the others' timers; its lease
                # runs out and it is tried again.
                log.exception(
                    "minuterie de la visite %s en échec ; nouvel essai à l'expiration de son bail",
                    record.visit_id,
                )


@dataclass(frozen=True)
class _Raised:
    alert: NewAlert
    planned: PlannedAlert
