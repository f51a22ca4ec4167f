"""What the device knows about its own messages: the durable outbox, or memory when the disk fails.

Used only from the client's logic thread. Every outbox failure is logged
here and the device goes on: an alert is still sent when the SD card dies
(it is then lost if the device restarts, and the log says so loudly).

The sequence counter lives here too, with the rule that lets a device whose
state directory was lost come back (docs/protocol.md, "Sequence numbers after
a lost state"): a *new* counter starts at the wall clock in milliseconds
(:func:`protocol.replay.fresh_sequence_start`), above anything the same
device could have used before. A Pi has no real-time clock: a reflashed one
may boot with its image's date until NTP steps the clock. If the clock jumps
forward after a counter was started from it, the counter is moved up to the
corrected clock, once: otherwise it would stay below the dispatcher's window.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from device.queue import NewItem, Outbox, OutboxError, OutboxItem
from protocol.replay import fresh_sequence_start

log = logging.getLogger(__name__)
# What the installer reads in the log for each kind (the wire keeps the English values).
KIND_WORDS = {"alert": "alerte", "test": "alerte de test", "cancel": "annulation"}

CLOCK_STEP_MS = 5 * 60 * 1000  # a jump this big is the clock being set, not drift


class Ledger:
    """The outbox (when it could be opened) plus the messages that only live in memory."""

    def __init__(
        self,
        state_dir: Path,
        *,
        now_ms: Callable[[], int],
        recent_ms: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now_ms = now_ms
        self._monotonic = monotonic
        self._recent_ms = recent_ms
        self._volatile: dict[str, OutboxItem] = {}  # only when the disk failed us
        # (wall ms, monotonic s) when this process started a counter from the clock.
        self._fresh_origin: tuple[int, float] | None = None
        self.outbox = self._open(state_dir)
        self._seq_floor = self._initial_seq_floor()

    @staticmethod
    def _open(state_dir: Path) -> Outbox | None:
        try:
            return Outbox.open(state_dir)
        except OutboxError as exc:
            log.critical("STOCKAGE DURABLE INDISPONIBLE, les alertes ne vivront qu'en mémoire : %s", exc)
            return None

    def _initial_seq_floor(self) -> int:
        """The last sequence number used, or one below a fresh start (new or unreadable state)."""
        if self.outbox is not None:
            try:
                last = self.outbox.last_seq()
            except OutboxError as exc:
                log.critical("impossible de lire le compteur de séquence : %s", exc)
            else:
                if last is not None:
                    return last
                log.warning("nouveau compteur de séquence (dossier d'état neuf ou perdu), tiré de l'horloge")
        now = self._now_ms()
        self._fresh_origin = (now, self._monotonic())
        return fresh_sequence_start(now) - 1

    def _follow_clock_setting(self) -> None:
        """Move a counter started from a clock that was behind up to the clock, once it is set."""
        if self._fresh_origin is None:
            return
        wall_ms, mono_s = self._fresh_origin
        now = self._now_ms()
        if now - (wall_ms + int((self._monotonic() - mono_s) * 1000)) <= CLOCK_STEP_MS:
            return
        self._fresh_origin = None
        floor = fresh_sequence_start(now) - 1
        if floor > self._seq_floor:
            log.warning("horloge avancée : compteur de séquence passé de %d à %d", self._seq_floor, floor)
            self._seq_floor = floor

    def close(self) -> None:
        """Close the database; undelivered messages stay in it for the next start."""
        if self.outbox is not None:
            self.outbox.close()

    # ---- writing ---------------------------------------------------------------------------

    def store(self, kind: str, build: Callable[[int], NewItem], ts_ms: int) -> tuple[OutboxItem, bool]:
        """Commit first; if the disk fails keep it in memory. Returns the item and whether it is durable."""
        self._follow_clock_setting()
        error: object = "no durable storage"
        if self.outbox is not None:
            try:
                item = self.outbox.enqueue(kind, build, now_ms=ts_ms, seq_at_least=self._seq_floor + 1)
                self._seq_floor = item.seq
                return item, True
            except OutboxError as exc:
                error = exc
        self._seq_floor += 1
        new = build(self._seq_floor)
        item = OutboxItem(new.event_id, kind, self._seq_floor, new.topic, new.payload, ts_ms, new.ref)
        self._volatile[item.event_id] = item
        log.critical(
            "%s %s NON ENREGISTRÉE DURABLEMENT (%s) : envoyée quand même ; perdue si la balise redémarre",
            KIND_WORDS.get(kind, kind).upper(),
            item.event_id,
            error,
        )
        return item, False

    def next_seq(self) -> int:
        """Allocate (and persist, when possible) the next sequence number."""
        self._follow_clock_setting()
        if self.outbox is not None:
            try:
                self._seq_floor = self.outbox.next_seq(at_least=self._seq_floor + 1)
                return self._seq_floor
            except OutboxError as exc:
                log.error("impossible d'enregistrer le compteur de séquence : %s", exc)
        self._seq_floor += 1
        return self._seq_floor

    def confirm(self, event_id: str) -> None:
        """The dispatcher has it: stop re-sending."""
        if event_id in self._volatile:
            self._volatile[event_id] = dataclasses.replace(self._volatile[event_id], delivered=True)
            return
        if self.outbox is not None:
            try:
                self.outbox.mark_delivered(event_id, self._now_ms())
            except OutboxError as exc:
                log.critical("impossible de noter la remise de %s (elle sera renvoyée) : %s", event_id, exc)

    def close_alert(self, event_id: str) -> None:
        """The alert is over (resolved, cancelled, or a cancel was sent for it)."""
        self._set_closed(event_id, closed=True)

    def reopen_alert(self, event_id: str) -> None:
        """A cancel was refused: the alert is active again (cancellable again)."""
        self._set_closed(event_id, closed=False)

    def _set_closed(self, event_id: str, *, closed: bool) -> None:
        if event_id in self._volatile:
            self._volatile[event_id] = dataclasses.replace(self._volatile[event_id], closed=closed)
            return
        if self.outbox is not None:
            try:
                if closed:
                    self.outbox.mark_closed(event_id, self._now_ms())
                else:
                    self.outbox.mark_open(event_id)
            except OutboxError as exc:
                log.error(
                    "impossible de noter que %s est %s : %s",
                    event_id,
                    "terminée" if closed else "en cours",
                    exc,
                )

    def first_feedback(self, ref: str, kind: str) -> bool:
        """Record feedback ``kind`` for ``ref``; False if it was already given (before a restart too)."""
        if self.outbox is None:
            return True
        try:
            return self.outbox.first_feedback(ref, kind, self._now_ms())
        except OutboxError as exc:
            log.error("impossible de noter le retour donné pour %s : %s", ref, exc)
            return True

    def feedback_given(self, ref: str, kind: str) -> bool:
        """True if feedback ``kind`` was recorded for ``ref`` (False when it cannot be read)."""
        if self.outbox is None:
            return False
        try:
            return self.outbox.has_feedback(ref, kind)
        except OutboxError as exc:
            log.error("impossible de lire le retour donné pour %s : %s", ref, exc)
            return False

    def purge(self) -> None:
        """Forget delivered messages older than the recent horizon."""
        if self.outbox is None:
            return
        try:
            self.outbox.purge(self._now_ms() - self._recent_ms)
        except OutboxError as exc:
            log.error("impossible de purger la file d'envoi : %s", exc)

    # ---- reading ---------------------------------------------------------------------------

    def pending(self) -> list[OutboxItem]:
        """Uplinks not yet confirmed by the dispatcher, oldest first."""
        stored: list[OutboxItem] = []
        if self.outbox is not None:
            try:
                stored = self.outbox.pending()
            except OutboxError as exc:
                log.error("impossible de lire la file d'envoi : %s", exc)
        volatile = [item for item in list(self._volatile.values()) if not item.delivered]
        return sorted(stored + volatile, key=lambda item: item.created_ms)

    def known(self, event_id: str) -> OutboxItem | None:
        """One of our recent messages, or None."""
        if event_id in self._volatile:
            return self._volatile[event_id]
        if self.outbox is None:
            return None
        try:
            return self.outbox.get(event_id)
        except OutboxError as exc:
            log.error("impossible de lire la file d'envoi : %s", exc)
            return None

    def latest_active_alert(self) -> OutboxItem | None:
        """The most recent alert that is neither over nor being cancelled."""
        since = self._now_ms() - self._recent_ms
        candidates = [
            item
            for item in self._volatile.values()
            if item.kind == "alert" and not item.closed and item.created_ms >= since
        ]
        if self.outbox is not None:
            try:
                stored = self.outbox.latest_active_alert(since_ms=since)
            except OutboxError as exc:
                log.error("impossible de lire la file d'envoi : %s", exc)
                stored = None
            if stored is not None:
                candidates.append(stored)
        return max(candidates, key=lambda item: item.created_ms, default=None)

    def active_alerts(self, limit: int = 3) -> list[OutboxItem]:
        """The ``limit`` most recent alerts neither over nor being cancelled, oldest first."""
        since = self._now_ms() - self._recent_ms
        volatile = [
            item
            for item in self._volatile.values()
            if item.kind == "alert" and not item.closed and item.created_ms >= since
        ]
        stored: list[OutboxItem] = []
        if self.outbox is not None:
            try:
                stored = self.outbox.active_alerts(since_ms=since, limit=limit)
            except OutboxError as exc:
                log.error("impossible de lire la file d'envoi : %s", exc)
        return sorted(stored + volatile, key=lambda item: item.created_ms)[-limit:]

    def cancels_for(self, alert_id: str) -> list[str]:
        """Ids of the unconfirmed cancels that target ``alert_id``."""
        ids = [
            i.event_id
            for i in self._volatile.values()
            if i.kind == "cancel" and i.ref == alert_id and not i.delivered
        ]
        if self.outbox is not None:
            try:
                ids += [item.event_id for item in self.outbox.cancels_for(alert_id)]
            except OutboxError as exc:
                log.error("impossible de lire la file d'envoi : %s", exc)
        return ids
