"""The orchestrator: gestures in, durable signed uplinks out, downlinks turned into vibrations.

Threads: gpiozero (button edges), the hold timer, paho's network thread, the
feedback worker, the battery reader and the gpsd reader only *report* to this
client's own logic thread through a queue. That single thread owns every decision, so the
outbox, the signing and the sequence counter are never raced and paho's
callback thread never waits on the disk.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Literal

from gpiozero.pins import Factory

from device.battery import BatteryMonitor, battery_reader
from device.config import DeviceConfig
from device.feedback import Feedback
from device.gestures import GestureKind, GestureRecogniser, Recognised
from device.gnss import GpsdClient
from device.haptics import LowBatteryWatch, NotDeliveredWatch, Pattern, PulseTiming, downlink_pattern
from device.inputs import ButtonInput
from device.ledger import KIND_WORDS, Ledger
from device.link import Backoff, Connected, Disconnected, DownlinkReceived, LinkEvent, MqttLink
from device.live_position import PositionReporter
from device.queue import NewItem, Outbox, OutboxItem
from device.watchdog import SystemdNotifier
from protocol.codec import Rejected, decode_downlink, encode_uplink, new_event_id
from protocol.messages import Downlink, Location
from protocol.replay import ALERT_TIME_WINDOW
from protocol.topics import QOS, UplinkKind, uplink_topic

log = logging.getLogger(__name__)

RECENT_MS = ALERT_TIME_WINDOW.max_age_ms  # how long an alert stays "ours" for downlinks and cancels
PURGE_INTERVAL_S = 3600.0
SignedKind = Literal["alert", "test", "cancel"]


def firmware_version() -> str:
    """Reported in heartbeats."""
    try:
        return f"vigie-device/{metadata.version('vigie')}"
    except metadata.PackageNotFoundError:
        return "vigie-device/dev"


@dataclass(frozen=True, slots=True)
class HealthReading:
    """Battery and radio level; None when the hardware cannot tell."""

    battery_pct: int | None = None
    signal_dbm: int | None = None


HealthProbe = Callable[[], HealthReading]


@dataclass(slots=True)
class ClientStats:
    """Counters for logs, diagnostics and tests."""

    alerts: int = 0
    tests: int = 0
    cancels: int = 0
    published: int = 0
    heartbeats: int = 0
    positions: int = 0
    connects: int = 0
    downlinks_applied: int = 0
    downlinks_rejected: int = 0
    downlinks_ignored: int = 0
    storage_failures: int = 0


@dataclass(frozen=True, slots=True)
class _Request:
    kind: SignedKind
    ts_ms: int
    gesture: str = "keyboard"
    duress: bool = False


@dataclass(frozen=True, slots=True)
class _BatteryReading:
    pct: int | None


class _Stop:
    """Asks the logic thread to finish."""


_Event = _Request | LinkEvent | _BatteryReading | _Stop


@dataclass(slots=True)
class _Timers:
    heartbeat_at: float = 0.0
    resend_at: float = 0.0
    purge_at: float = 0.0
    last_sent: dict[str, float] = field(default_factory=dict)

    def next_due(self, *, connected: bool) -> float:
        """When the logic thread must wake for these timers.

        A heartbeat is due only while connected: out of reach of the broker it
        cannot be sent, so it stays due, and counting it would wake the thread
        at once, over and over (a core at 100 % and a drained battery wherever
        there is no coverage). The reconnection wakes the thread itself.
        """
        due = min(self.resend_at, self.purge_at)
        return min(due, self.heartbeat_at) if connected else due


class DeviceClient:
    """A running device. Build it, :meth:`start` it, :meth:`stop` it.

    ``pin_factory`` is handed to gpiozero (a ``MockFactory`` in tests and in
    ``--simulate``); the other keyword options exist so tests and the
    simulator can shorten delays.
    """

    def __init__(
        self,
        config: DeviceConfig,
        *,
        key: bytes,
        password: str | None = None,
        pin_factory: Factory | None = None,
        pulse_timing: PulseTiming | None = None,
        resend_interval_s: float = 10.0,
        backoff: Backoff | None = None,
        health: HealthProbe = HealthReading,
        wall_clock: Callable[[], float] = time.time,
        gesture_clock: Callable[[], float] = time.monotonic,
        systemd: SystemdNotifier | None = None,
    ) -> None:
        self.config = config
        self.device_id = config.device.id
        self._key = key
        self._resend_interval_s = resend_interval_s
        self._health = health
        self._wall_clock = wall_clock
        # Pinged from the logic loop itself: a deadlocked loop stops pinging and
        # systemd (WatchdogSec=) restarts the client.
        self.systemd = systemd if systemd is not None else SystemdNotifier()
        self._started_at = time.monotonic()
        self._events: queue.Queue[_Event] = queue.Queue()
        self._stats = ClientStats()
        self._stats_changed = threading.Condition()
        self._timers = _Timers()
        self._feedback_given: set[tuple[str, str]] = set()
        self._thread = threading.Thread(target=self._run, name="vigie-client", daemon=True)
        self.ledger = Ledger(config.device.state_dir, now_ms=self._now_ms, recent_ms=RECENT_MS)
        self._undelivered = NotDeliveredWatch(config.haptic_policy())
        self._low_battery = LowBatteryWatch(config.haptic_policy())
        self._battery_pct: int | None = None
        self.battery = BatteryMonitor(
            battery_reader(sysfs_root=config.battery.sysfs_root, command=config.battery.command),
            lambda pct: self._events.put(_BatteryReading(pct)),
            interval_s=config.battery.interval_s,
        )
        self.feedback = Feedback.on_pin(
            config.gpio.feedback_pin, kind=config.gpio.feedback, pin_factory=pin_factory, timing=pulse_timing
        )
        self.button = ButtonInput.on_pin(
            config.gpio.button_pin,
            GestureRecogniser(config.gestures.timing()),
            self._on_gesture,
            pull_up=config.gpio.pull_up,
            pin_factory=pin_factory,
            clock=gesture_clock,
        )
        self.link = MqttLink(
            device_id=self.device_id,
            settings=config.mqtt,
            username=config.username,
            password=password,
            on_event=self._events.put,
            backoff=backoff,
        )
        self.gnss = self._build_gnss()
        self.positions = PositionReporter(
            device_id=self.device_id,
            key=key,
            interval_s=config.gnss.position_interval_s,
            ledger=self.ledger,
            link=self.link,
            location=self._location,
            now_ms=self._now_ms,
        )

    @property
    def outbox(self) -> Outbox | None:
        """The durable outbox, None when the state directory could not be opened."""
        return self.ledger.outbox

    # ---- construction helpers -------------------------------------------------------------

    def _build_gnss(self) -> GpsdClient | None:
        gnss = self.config.gnss
        if not gnss.enabled:
            return None
        return GpsdClient(host=gnss.gpsd_host, port=gnss.gpsd_port, max_fix_age_s=gnss.max_fix_age_s)

    # ---- public, thread-safe API ----------------------------------------------------------

    def start(self) -> None:
        """Start the logic thread, the MQTT link and the GNSS reader."""
        self._thread.start()
        if self.gnss is not None:
            self.gnss.start()
        self.battery.start()
        self.link.start()

    def stop(self) -> None:
        """Stop everything; undelivered alerts stay in the outbox for the next start."""
        self._events.put(_Stop())
        self._thread.join(timeout=10)
        self.link.stop()
        self.button.close()
        self.feedback.close()
        self.battery.stop()
        if self.gnss is not None:
            self.gnss.stop()
        self.ledger.close()

    def request_alert(self, gesture: str = "keyboard") -> None:
        """Raise an alert as if the button gesture ``gesture`` had been made."""
        self._events.put(_Request("alert", self._now_ms(), gesture=gesture))

    def request_test(self, gesture: str = "keyboard") -> None:
        """Send a test alert (exercises the chain; responders only in a drill the convention allows)."""
        self._events.put(_Request("test", self._now_ms(), gesture=gesture))

    def request_cancel(self, *, duress: bool = False) -> None:
        """Cancel the most recent active alert, with the duress PIN if ``duress``."""
        self._events.put(_Request("cancel", self._now_ms(), duress=duress))

    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        with self._stats_changed:
            return dataclasses.replace(self._stats)

    def wait_for(self, predicate: Callable[[ClientStats], bool], timeout: float) -> bool:
        """Block until ``predicate(stats)`` holds; False on timeout."""
        with self._stats_changed:
            return self._stats_changed.wait_for(lambda: predicate(self._stats), timeout)

    def pending(self) -> list[OutboxItem]:
        """Uplinks not yet confirmed by the dispatcher, oldest first."""
        return self.ledger.pending()

    # ---- event intake (other threads) -----------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _on_gesture(self, gesture: Recognised) -> None:
        now_ms = self._now_ms()
        if gesture.kind.is_alert:
            self._events.put(_Request("alert", now_ms, gesture=gesture.kind.value))
        elif gesture.kind is GestureKind.TEST:
            self._events.put(_Request("test", now_ms, gesture="multi_press"))
        else:
            duress = gesture.kind is GestureKind.DURESS_CANCEL
            self._events.put(_Request("cancel", now_ms, duress=duress))

    def _count(self, **increments: int) -> None:
        with self._stats_changed:
            for name, value in increments.items():
                setattr(self._stats, name, getattr(self._stats, name) + value)
            self._stats_changed.notify_all()

    # ---- logic thread ---------------------------------------------------------------------

    def _run(self) -> None:
        self._sync_gesture_state()
        for item in self.pending():  # still undelivered from before a restart: she must know
            if item.kind in ("alert", "test"):
                self._undelivered.watch(item.event_id, time.monotonic())
        while True:
            self.systemd.watchdog()
            try:
                event = self._events.get(timeout=self._seconds_to_next_timer())
            except queue.Empty:
                event = None
            if isinstance(event, _Stop):
                return
            try:
                if event is not None:
                    self._handle(event)
                self._run_due_timers()
            except Exception:  # the client must outlive any single bad event
                log.exception("erreur en traitant l'événement %s", type(event).__name__)

    def _handle(self, event: _Request | LinkEvent | _BatteryReading) -> None:
        if isinstance(event, _Request):
            self._handle_request(event)
        elif isinstance(event, _BatteryReading):
            self._battery_pct = event.pct
            self._play(self._low_battery.reading(event.pct, time.monotonic()))
        elif isinstance(event, Connected):
            self._count(connects=1)
            self._timers.heartbeat_at = 0.0  # say hello right away
            self._resend(force=True)
        elif isinstance(event, Disconnected):
            log.info(
                "liaison coupée (%s) : les alertes sont gardées et renvoyées à la reconnexion", event.reason
            )
        elif isinstance(event, DownlinkReceived):
            self._handle_downlink(event.payload)

    def _handle_request(self, request: _Request) -> None:
        if request.kind == "cancel":
            self._cancel(request)
        else:
            self._raise(request)
        self._sync_gesture_state()

    def _seconds_to_next_timer(self) -> float:
        now = time.monotonic()
        due = self._timers.next_due(connected=self.link.is_connected)
        if self.gnss is not None:
            due = min(due, self.positions.due_at)
        not_delivered = self._undelivered.next_deadline()
        if not_delivered is not None:
            due = min(due, not_delivered)
        return max(0.0, min(due - now, 1.0))

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        if now >= self._timers.resend_at:
            self._timers.resend_at = now + min(self._resend_interval_s, 1.0)
            self._resend(force=False)
        if now >= self._timers.heartbeat_at and self.link.is_connected:
            self._timers.heartbeat_at = now + self.config.mqtt.heartbeat_interval_s
            self._send_heartbeat()
        if self.gnss is not None and (sent := self.positions.poll(now)):
            self._count(positions=sent)
        if now >= self._timers.purge_at:
            self._timers.purge_at = now + PURGE_INTERVAL_S
            self.ledger.purge()
        self._play(self._undelivered.poll(now))

    def _play(self, patterns: list[Pattern]) -> None:
        for pattern in patterns:
            self.feedback.play(pattern)

    # ---- raising, storing and sending -----------------------------------------------------

    def _location(self) -> Location | None:
        return self.gnss.latest() if self.gnss is not None else None

    def _raise(self, request: _Request) -> None:
        kind: Literal["alert", "test"] = "alert" if request.kind == "alert" else "test"
        location = self._location()

        def build(seq: int) -> NewItem:
            message, payload = encode_uplink(
                kind=kind,
                device_id=self.device_id,
                event_id=new_event_id(),
                seq=seq,
                ts_ms=request.ts_ms,
                key=self._key,
                location=location,
                gesture=request.gesture,
            )
            return NewItem(message.id, uplink_topic(self.device_id, UplinkKind(kind)), payload)

        item = self._store(kind, build, request.ts_ms)
        log.info(
            "%s %s enregistrée (seq %d, geste %s, position %s)",
            KIND_WORDS.get(kind, kind),
            item.event_id,
            item.seq,
            request.gesture,
            "oui" if location else "non",
        )
        self._count(**{"alerts" if kind == "alert" else "tests": 1})
        self._undelivered.watch(item.event_id, time.monotonic())
        self._send(item)

    def _cancel(self, request: _Request) -> None:
        target = self.ledger.latest_active_alert()
        if target is None:
            log.warning("geste d'annulation ignoré : aucune alerte en cours")
            return
        pin = self.config.cancel.duress_pin if request.duress else self.config.cancel.pin
        if pin is None:  # refused at start-up (device.config); kept for configs built in code
            log.error("geste d'annulation sous contrainte ignoré : cancel.duress_pin non configuré")
            return

        def build(seq: int) -> NewItem:
            message, payload = encode_uplink(
                kind="cancel",
                device_id=self.device_id,
                event_id=new_event_id(),
                seq=seq,
                ts_ms=request.ts_ms,
                key=self._key,
                alert_id=target.event_id,
                pin=pin,
            )
            topic = uplink_topic(self.device_id, UplinkKind.CANCEL)
            return NewItem(message.id, topic, payload, ref=target.event_id)

        item = self._store("cancel", build, request.ts_ms)
        # Closed only after the cancel is stored: a crash in between leaves the alert cancellable.
        self._close(target.event_id)
        if request.duress:  # over for whoever watches her; not for the police on their way
            self.positions.follow_after_duress(target.event_id, time.monotonic())
        log.info("annulation %s enregistrée pour l'alerte %s", item.event_id, target.event_id)
        self._count(cancels=1)
        self._send(item)

    def _store(self, kind: SignedKind, build: Callable[[int], NewItem], ts_ms: int) -> OutboxItem:
        """Commit first (the ledger keeps it in memory, loudly, if the disk fails)."""
        item, durable = self.ledger.store(kind, build, ts_ms)
        if not durable:
            self._count(storage_failures=1)
        return item

    def _send(self, item: OutboxItem) -> None:
        if not self.link.is_connected:
            log.info("%s %s en attente du broker", KIND_WORDS.get(item.kind, item.kind), item.event_id)
            return
        if self.link.publish(item.topic, item.payload, qos=QOS[item.kind].qos):
            self._timers.last_sent[item.event_id] = time.monotonic()
            self._count(published=1)

    def _resend(self, *, force: bool) -> None:
        """Send every unconfirmed message again, oldest first, byte for byte."""
        if not self.link.is_connected:
            return
        now = time.monotonic()
        for item in self.pending():
            last = self._timers.last_sent.get(item.event_id)
            if force or last is None or now - last >= self._resend_interval_s:
                if last is not None:
                    log.info(
                        "renvoi : %s %s (seq %d)",
                        KIND_WORDS.get(item.kind, item.kind),
                        item.event_id,
                        item.seq,
                    )
                self._send(item)

    def _send_heartbeat(self) -> None:
        health = self._health()
        seq = self.ledger.next_seq()
        _, payload = encode_uplink(
            kind="heartbeat",
            device_id=self.device_id,
            event_id=new_event_id(),
            seq=seq,
            ts_ms=self._now_ms(),
            key=self._key,
            location=self._location(),
            battery_pct=health.battery_pct if health.battery_pct is not None else self._battery_pct,
            signal_dbm=health.signal_dbm,
            firmware=firmware_version(),
            uptime_s=int(time.monotonic() - self._started_at),
        )
        policy = QOS[UplinkKind.HEARTBEAT]
        topic = uplink_topic(self.device_id, UplinkKind.HEARTBEAT)
        if self.link.publish(topic, payload, qos=policy.qos, retain=policy.retain):
            self._count(heartbeats=1)

    # ---- what we know about our alerts ----------------------------------------------------

    def _sync_gesture_state(self) -> None:
        self.button.set_alert_active(self.ledger.latest_active_alert() is not None)

    def _confirm(self, event_id: str) -> None:
        """The dispatcher has it: stop re-sending, and stop the "not delivered" reminder."""
        self._timers.last_sent.pop(event_id, None)
        self._undelivered.settle(event_id)
        self.ledger.confirm(event_id)

    def _close(self, event_id: str) -> None:
        self._undelivered.settle(event_id)
        self.ledger.close_alert(event_id)

    # ---- downlinks ------------------------------------------------------------------------

    def _handle_downlink(self, payload: bytes) -> None:
        try:
            downlink = decode_downlink(payload, self.device_id, self._key)
        except Rejected as exc:
            log.warning("message descendant ignoré (%s)", exc)
            self._count(downlinks_rejected=1)
            return
        if self.ledger.known(downlink.ref) is None:
            # A replayed "acknowledged" about someone else's or a forgotten alert must not reassure her.
            log.warning(
                "message descendant « %s » ignoré : %s n'est pas une alerte récente",
                downlink.type,
                downlink.ref,
            )
            self._count(downlinks_ignored=1)
            return
        self._apply(downlink)
        self._sync_gesture_state()
        self._count(downlinks_applied=1)

    def _apply(self, downlink: Downlink) -> None:
        """Turn a verified downlink about our message ``ref`` into state and a pattern (see haptics)."""
        ref = downlink.ref
        log.info("message descendant « %s » pour %s", downlink.type, ref)
        self._confirm(ref)  # any downlink about it proves the dispatcher has it
        item = self.ledger.known(ref)
        about = item.kind if item is not None else "alert"
        pattern = downlink_pattern(downlink.type, about)
        if downlink.type in ("resolved", "cancelled"):
            self._close(ref)
            self.positions.closing_downlink(ref)
            for cancel_id in self.ledger.cancels_for(ref):
                self._confirm(cancel_id)
            self._feedback_once(ref, "closed", Pattern.CLOSED)
        elif downlink.type == "cancel_refused":
            self._cancel_refused(item.ref if item is not None and about == "cancel" and item.ref else ref)
        elif pattern is not None:
            self._feedback_once(ref, downlink.type, pattern)

    def _cancel_refused(self, alert_id: str) -> None:
        """The dispatcher kept the alert open: so must we, and she must feel it."""
        for cancel_id in self.ledger.cancels_for(alert_id):
            self._confirm(cancel_id)  # refused for good: re-sending the same cancel changes nothing
        alert = self.ledger.known(alert_id)
        if alert is None or not alert.closed or (alert_id, "closed") in self._feedback_given:
            return  # already open again (a repeated refusal), or really over: nothing to reopen
        if self.ledger.feedback_given(alert_id, "closed"):
            return
        self.ledger.reopen_alert(alert_id)
        self.feedback.play(Pattern.CANCEL_REFUSED)

    def _feedback_once(self, ref: str, kind: str, pattern: Pattern) -> None:
        if (ref, kind) in self._feedback_given:
            return
        self._feedback_given.add((ref, kind))
        if self.ledger.first_feedback(ref, kind):
            self.feedback.play(pattern)
