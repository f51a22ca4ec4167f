"""A group commit of new alerts on PostgreSQL, in a fixed number of statements.

Written alert by alert, a batch took about eight round trips per alert (the
alert, its device's window, its "received" event, then its first transition:
the alert's state, timers, events, links, notifications), each a wait for the
server on a machine shared with it: at 100 alerts/s one instance spent most of
an alert's path there (docs/performance.md, "New alerts in a fixed number of
statements"). Here each of those is one statement for the whole batch,
``unnest`` over arrays, in the order the alerts came: the rows, their ids and
the outcome are what the alert-by-alert writing gave (the store conformance
tests run against both).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dispatcher.store.base import (
    Conflict,
    InsertOutcome,
    Lease,
    NewAlert,
    NotificationSpec,
    Transition,
    claimed_record,
)
from dispatcher.store.pgutil import Conn, _utc
from protocol.replay import SequenceWindow, merge_windows

Batch = Sequence[tuple[NewAlert, SequenceWindow, Transition | None]]


async def insert_alert_batch(
    conn: Conn, windows: dict[str, SequenceWindow], batch: Batch, now: datetime, lease: Lease | None
) -> list[InsertOutcome]:
    """Inside a transaction holding the devices' rows: insert ``batch``; one outcome per entry."""
    created = await _insert_alerts(conn, batch, now)
    fresh, seen = [], set()
    for entry in batch:  # an alert twice in a batch is created once, by its first copy
        if entry[0].id in created and entry[0].id not in seen:
            seen.add(entry[0].id)
            fresh.append(entry)
    if not fresh:
        return [InsertOutcome(created=False) for _ in batch]
    await _save_windows(conn, windows, fresh)
    await _received_events(conn, fresh, now)
    sent = await write_transitions(conn, [first for _, _, first in fresh if first is not None], now, lease)
    outcomes, told = [], set()
    for alert, _, first in batch:
        if alert.id not in seen or alert.id in told:
            outcomes.append(InsertOutcome(created=False))
            continue
        told.add(alert.id)
        if first is None or lease is None:
            outcomes.append(InsertOutcome(created=True))
        else:
            claimed = tuple(claimed_record(i, alert.id, n) for i, n in sent.get(alert.id, []))
            outcomes.append(InsertOutcome(created=True, claimed=claimed))
    return outcomes


async def _insert_alerts(conn: Conn, batch: Batch, now: datetime) -> set[str]:
    alerts = [a for a, _, _ in batch]
    rows = await conn.fetch(
        "INSERT INTO alerts(id, device_id, kind, seq, device_ts, received_at, gesture, fix, raw, state,"
        " updated_at) SELECT i, d, k, s, dt, ra, g, f::jsonb, r, 'received', $1"
        " FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[],"
        " $7::timestamptz[], $8::text[], $9::text[], $10::bytea[])"
        " WITH ORDINALITY AS u(i, d, k, s, dt, ra, g, f, r, o)"
        " ORDER BY o ON CONFLICT (id) DO NOTHING RETURNING id",
        now,
        [a.id for a in alerts],
        [a.device_id for a in alerts],
        [a.kind for a in alerts],
        [a.seq for a in alerts],
        [_utc(a.device_ts) for a in alerts],
        [_utc(a.received_at) for a in alerts],
        [a.gesture for a in alerts],
        [_json_or_none(a.fix or None) for a in alerts],
        [a.raw for a in alerts],
    )
    return {str(r["id"]) for r in rows}


async def _save_windows(conn: Conn, windows: dict[str, SequenceWindow], fresh: Batch) -> None:
    """Each device's window merged with its new alerts', and its latest fix among them (if any)."""
    fixes: dict[str, dict[str, Any] | None] = {}
    for alert, window, _ in fresh:
        windows[alert.device_id] = merge_windows(windows.get(alert.device_id, SequenceWindow()), window)
        if alert.fix or alert.device_id not in fixes:
            fixes[alert.device_id] = alert.fix or fixes.get(alert.device_id)
    devices = list(fixes)
    await conn.execute(
        "UPDATE devices SET replay_high=u.h, replay_seen=u.s, last_fix=COALESCE(u.f::jsonb, last_fix)"
        " FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::text[]) AS u(i, h, s, f)"
        " WHERE devices.id=u.i",
        devices,
        [windows[d].high for d in devices],
        [windows[d].to_bytes() for d in devices],
        [_json_or_none(fixes[d]) for d in devices],
    )


async def _received_events(conn: Conn, fresh: Batch, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO alert_events(alert_id, at, kind, detail) SELECT a, $1, 'received', d::jsonb"
        " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(a, d, o) ORDER BY o",
        now,
        [a.id for a, _, _ in fresh],
        [json.dumps({"seq": a.seq, "gesture": a.gesture}) for a, _, _ in fresh],
    )


async def write_transitions(
    conn: Conn, transitions: Sequence[Transition], now: datetime, lease: Lease | None
) -> dict[str, list[tuple[int, NotificationSpec]]]:
    """Transitions of distinct alerts (a batch's first ones, or one); per alert, the notifications
    created ('pending', or claimed under ``lease``). A version no longer current is a Conflict."""
    if not transitions:
        return {}
    await _move_alerts(conn, transitions, now)
    cancelled = [t.alert_id for t in transitions if t.cancel_timers]
    if cancelled:
        await conn.execute("DELETE FROM timers WHERE alert_id = ANY($1::text[])", cancelled)
    await _timers(conn, transitions)
    await _events(conn, transitions, now)
    await _links(conn, transitions, now)
    return await _notifications(conn, transitions, now, lease)


async def _move_alerts(conn: Conn, transitions: Sequence[Transition], now: datetime) -> None:
    status = await conn.execute(
        "UPDATE alerts SET state=u.st, escalation=u.e::jsonb, context=COALESCE(u.c::jsonb, alerts.context),"
        " version=alerts.version+1, updated_at=$1"
        " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[]) AS u(i, st, e, c, v)"
        " WHERE alerts.id=u.i AND alerts.version=u.v",
        now,
        [t.alert_id for t in transitions],
        [t.state for t in transitions],
        [json.dumps(t.escalation) for t in transitions],
        [_json_or_none(t.context) for t in transitions],
        [t.expected_version for t in transitions],
    )
    if int(status.split()[-1]) != len(transitions):
        t = transitions[0]
        which = f"alert {t.alert_id}" if len(transitions) == 1 else "an alert of the batch"
        raise Conflict(f"{which} changed since version {t.expected_version}")


async def _timers(conn: Conn, transitions: Sequence[Transition]) -> None:
    rows = [(t.alert_id, s) for t in transitions for s in t.timers]
    if rows:
        await conn.execute(
            "INSERT INTO timers(alert_id, kind, due_at, payload)"
            " SELECT a, k, d, p::jsonb"
            " FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[]) AS u(a, k, d, p)",
            [a for a, _ in rows],
            [s.kind for _, s in rows],
            [s.due_at for _, s in rows],
            [json.dumps(s.payload) for _, s in rows],
        )


async def _events(conn: Conn, transitions: Sequence[Transition], now: datetime) -> None:
    rows = [(t.alert_id, kind, detail) for t in transitions for kind, detail in t.events]
    if rows:
        await conn.execute(
            "INSERT INTO alert_events(alert_id, at, kind, detail)"
            " SELECT a, $1, k, d::jsonb FROM unnest($2::text[], $3::text[], $4::text[])"
            " WITH ORDINALITY AS u(a, k, d, o) ORDER BY o",
            now,
            [a for a, _, _ in rows],
            [k for _, k, _ in rows],
            [json.dumps(d) for _, _, d in rows],
        )


async def _links(conn: Conn, transitions: Sequence[Transition], now: datetime) -> None:
    rows = [(t.alert_id, link) for t in transitions for link in t.links]
    if rows:
        await conn.execute(
            "INSERT INTO responder_links(token_hash, alert_id, contact_id, created_at)"
            " SELECT h, a, c, $1 FROM unnest($2::text[], $3::text[], $4::text[]) AS u(h, a, c)"
            " ON CONFLICT (token_hash) DO NOTHING",
            now,
            [link.token_hash for _, link in rows],
            [a for a, _ in rows],
            [link.contact_id for _, link in rows],
        )


async def _notifications(
    conn: Conn, transitions: Sequence[Transition], now: datetime, lease: Lease | None
) -> dict[str, list[tuple[int, NotificationSpec]]]:
    specs = [(t.alert_id, n) for t in transitions for n in t.notifications]
    if not specs:
        return {}
    status, owner, until, attempts = (
        ("pending", None, None, 0) if lease is None else ("sending", lease.owner, lease.until, 1)
    )
    rows = await conn.fetch(
        "INSERT INTO notifications(alert_id, contact_id, contact_name, phone, channel, purpose, tier,"
        " round, duress, actor, status, lease_owner, lease_until, attempts, created_at, updated_at)"
        " SELECT al, ci, cn, ph, ch, pu, ti, ro, du, ac, $1::text, $2::text, $3::float8, $4::int, $5, $5"
        " FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int[],"
        " $13::int[], $14::bool[], $15::text[])"
        " WITH ORDINALITY AS u(al, ci, cn, ph, ch, pu, ti, ro, du, ac, o) ORDER BY o ON CONFLICT DO NOTHING"
        " RETURNING id, alert_id, contact_id, channel, purpose, tier, round",
        status,
        owner,
        until,
        attempts,
        now,
        [a for a, _ in specs],
        *(
            [getattr(n, col) for _, n in specs]
            for col in ("contact_id", "contact_name", "phone", "channel", "purpose")
        ),
        [n.tier for _, n in specs],
        [n.round for _, n in specs],
        [n.duress for _, n in specs],
        [n.actor for _, n in specs],
    )
    # Matched back to their specs by the UNIQUE key (RETURNING's order is not guaranteed).
    by_key = {(a, n.contact_id, n.channel, n.purpose, n.tier, n.round): n for a, n in specs}
    created: dict[str, list[tuple[int, NotificationSpec]]] = {}
    for r in sorted(rows, key=lambda r: int(r["id"])):
        key = (r["alert_id"], r["contact_id"], r["channel"], r["purpose"], r["tier"], r["round"])
        created.setdefault(str(r["alert_id"]), []).append((int(r["id"]), by_key[key]))
    return created


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)
