"""Schema migrations, applied in order; ``PRAGMA user_version`` records progress.

Directory records are stored as validated JSON documents (the domain models
are the schema), with the columns that queries filter on kept beside them.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1 — directory, alerts, escalation, notifications, timers, audit of rejections
    """
    CREATE TABLE practitioners (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE sites (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE conventions (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE visits (
        id TEXT PRIMARY KEY,
        practitioner_id TEXT NOT NULL REFERENCES practitioners(id),
        ends_at TEXT NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE INDEX visits_by_practitioner ON visits(practitioner_id, ends_at);
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        doc TEXT NOT NULL,
        state TEXT NOT NULL,
        hmac_key BLOB NOT NULL,
        replay_high INTEGER NOT NULL DEFAULT -1,
        replay_seen BLOB,
        last_fix TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id),
        kind TEXT NOT NULL,
        seq INTEGER NOT NULL,
        device_ts TEXT NOT NULL,
        received_at TEXT NOT NULL,
        gesture TEXT NOT NULL,
        fix TEXT,
        raw BLOB NOT NULL,
        state TEXT NOT NULL,
        escalation TEXT,
        context TEXT,
        version INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX alerts_by_state ON alerts(state);
    CREATE INDEX alerts_by_received ON alerts(received_at);
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY,
        alert_id TEXT NOT NULL REFERENCES alerts(id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX alert_events_by_alert ON alert_events(alert_id, id);
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        alert_id TEXT NOT NULL REFERENCES alerts(id),
        contact_id TEXT NOT NULL,
        contact_name TEXT NOT NULL,
        phone TEXT NOT NULL,
        channel TEXT NOT NULL,
        purpose TEXT NOT NULL,
        tier INTEGER NOT NULL,
        round INTEGER NOT NULL,
        status TEXT NOT NULL,
        provider_sid TEXT UNIQUE,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until REAL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (alert_id, contact_id, channel, purpose, tier, round)
    );
    CREATE INDEX notifications_by_status ON notifications(status);
    CREATE INDEX notifications_by_phone ON notifications(phone, created_at);
    CREATE TABLE timers (
        id INTEGER PRIMARY KEY,
        alert_id TEXT NOT NULL REFERENCES alerts(id),
        kind TEXT NOT NULL,
        due_at REAL NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',
        lease_owner TEXT,
        lease_until REAL
    );
    CREATE INDEX timers_by_due ON timers(due_at);
    CREATE TABLE rejections (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        device_id TEXT,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE device_health (
        device_id TEXT PRIMARY KEY REFERENCES devices(id),
        last_seen_at TEXT,
        status TEXT,
        battery_pct INTEGER,
        signal_dbm INTEGER,
        firmware TEXT,
        uptime_s INTEGER,
        flags TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE operator_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        alert_id TEXT,
        device_id TEXT,
        message TEXT NOT NULL,
        handled_by TEXT
    );
    """,
]

# 2 — access control, audit trail, notes and retention (issue #5: API and console).
# Users' conventions are a JSON array of convention ids; session tokens are stored
# only as SHA-256 digests, so a copy of the database cannot be replayed as cookies.
MIGRATIONS.append(
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'practitioner')),
        practitioner_id TEXT,
        conventions TEXT NOT NULL DEFAULT '[]',
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX sessions_by_expiry ON sessions(expires_at);
    CREATE TABLE login_failures (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL,
        ip TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX login_failures_by_key ON login_failures(username, ip, at);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        user_id INTEGER,
        username TEXT,
        action TEXT NOT NULL,
        target_kind TEXT,
        target_id TEXT,
        ip TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_by_target ON audit_log(target_kind, target_id);
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TABLE alert_notes (
        id INTEGER PRIMARY KEY,
        alert_id TEXT NOT NULL REFERENCES alerts(id),
        at TEXT NOT NULL,
        user_id INTEGER,
        author TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX alert_notes_by_alert ON alert_notes(alert_id, id);
    ALTER TABLE alerts ADD COLUMN location_purged_at TEXT;
    """
)

# 3 — directory version: bumped by triggers on every change to what the in-memory
# directory snapshot holds (issue: refreshing 10,000 devices every 2 s stalled the
# event loop). The snapshot polls this one row and reloads only when it moved.
# On devices, only the directory columns count: replay_high/replay_seen/last_fix
# change with every alert and must not force a reload.
MIGRATIONS.append(
    """
    CREATE TABLE directory_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    );
    INSERT INTO directory_version(id, version) VALUES (1, 0);
    """
    + "".join(
        f"""
    CREATE TRIGGER {table}_{event.split()[0].lower()}_bumps_directory AFTER {event} ON {table}
        BEGIN UPDATE directory_version SET version = version + 1 WHERE id = 1; END;
    """
        for table, events in (
            ("practitioners", ("INSERT", "UPDATE", "DELETE")),
            ("sites", ("INSERT", "UPDATE", "DELETE")),
            ("conventions", ("INSERT", "UPDATE", "DELETE")),
            ("visits", ("INSERT", "UPDATE", "DELETE")),
            ("devices", ("INSERT", "UPDATE OF doc, state, hmac_key", "DELETE")),
        )
        for event in events
    )
)

# 4 — device health with N instances (docs/architecture.md): every instance merges
# what it heard into device_health (latest status wins by status_at, last_seen only
# moves forward; rev orders the changes for the leader's incremental reads), and
# one instance at a time - the holder of the 'health' lease - writes the flags.
MIGRATIONS.append(
    """
    ALTER TABLE device_health ADD COLUMN status_at TEXT;
    ALTER TABLE device_health ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX device_health_by_rev ON device_health(rev);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until REAL NOT NULL
    );
    """
)

# 5 — what a notification must say, decided with it: ``duress`` (decided after a
# duress cancel: the danger is confirmed) and ``actor`` (who acknowledged or closed
# the alert). Read by delivery from the row, so that any instance sends the right
# words without re-reading the alert.
MIGRATIONS.append(
    """
    ALTER TABLE notifications ADD COLUMN duress INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE notifications ADD COLUMN actor TEXT;
    """
)

# 6 — home-visit timers and the practitioner's incident reports (issue 14). A visit
# timer is one row with its due time (like the escalation's timers, any instance
# claims it with a lease); ``state`` is the JSON of dispatcher.visits.timer's state.
MIGRATIONS.append(
    """
    CREATE TABLE visit_timers (
        visit_id TEXT PRIMARY KEY,
        practitioner_id TEXT NOT NULL,
        phase TEXT NOT NULL,
        due_at REAL,
        state TEXT NOT NULL,
        version INTEGER NOT NULL,
        alert_id TEXT REFERENCES alerts(id),
        lease_owner TEXT,
        lease_until REAL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX visit_timers_by_due ON visit_timers(due_at);
    CREATE INDEX visit_timers_by_practitioner ON visit_timers(practitioner_id, created_at);
    CREATE TABLE incident_reports (
        alert_id TEXT PRIMARY KEY REFERENCES alerts(id),
        doc TEXT NOT NULL,
        author TEXT NOT NULL,
        user_id INTEGER,
        updated_at TEXT NOT NULL
    );
    """
)

# 7 — secrets of the deployment that only the dispatchers share (issue 13): the MQTT
# share-group name, so that a device login cannot join the dispatchers' group.
MIGRATIONS.append(
    """
    CREATE TABLE deployment_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """
)

# 8 — commune contours (issue 10: GPS fixes routed by commune, offline). Replaced
# per département in one transaction; communes_version tells the in-memory index
# to rebuild. Not a directory change: the snapshot does not reload for it.
MIGRATIONS.append(
    """
    CREATE TABLE communes (
        code TEXT PRIMARY KEY,
        nom TEXT NOT NULL,
        departement TEXT NOT NULL,
        geometry BLOB NOT NULL
    );
    CREATE INDEX communes_by_departement ON communes(departement);
    CREATE TABLE communes_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    );
    INSERT INTO communes_version(id, version) VALUES (1, 0);
    """
)

# 9 — issue 13: inbound SMS ids (a replayed signed webhook must do nothing), and the
# argon2 PIN hashes that every alert's context used to copy, erased from stored alerts.
MIGRATIONS.append(
    """
    CREATE TABLE inbound_messages (sid TEXT PRIMARY KEY, at TEXT NOT NULL);
    UPDATE alerts SET context = json_remove(
        context,
        '$.practitioner.cancel_pin_hash', '$.practitioner.duress_pin_hash',
        '$.site.cancel_pin_hash', '$.site.duress_pin_hash'
    ) WHERE context IS NOT NULL;
    """
)

# 10 — issue 17: provider records the reconciliation could not attribute to one
# row (several lost requests to the same number); nobody adopts them later.
MIGRATIONS.append(
    """
    CREATE TABLE disowned_provider_records (sid TEXT PRIMARY KEY, at TEXT NOT NULL);
    CREATE INDEX notifications_in_doubt ON notifications(phone, channel) WHERE provider_sid IS NULL;
    """
)

# 11 — issue 15: live positions a device sends while its alert is open (the
# responders' page). Times as integer microseconds since the epoch (UTC): exact
# round trips and an index that orders them. Erased with the alert's location.
MIGRATIONS.append(
    """
    CREATE TABLE alert_positions (
        id INTEGER PRIMARY KEY,
        alert_id TEXT NOT NULL REFERENCES alerts(id),
        lat REAL NOT NULL,
        lon REAL NOT NULL,
        accuracy_m REAL,
        at_us INTEGER NOT NULL,
        received_us INTEGER NOT NULL
    );
    CREATE INDEX alert_positions_latest ON alert_positions(alert_id, at_us, id);
    """
)

# 12 — issue 15: responder links (the SMS's /r/<token>): only the token's SHA-256 is kept;
# one alert, one contact each; a contact may hold several (one per instance that sent).
MIGRATIONS.append(
    """
    CREATE TABLE responder_links (
        token_hash TEXT PRIMARY KEY,
        alert_id TEXT NOT NULL REFERENCES alerts(id),
        contact_id TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX responder_links_by_alert ON responder_links(alert_id, contact_id);
    """
)

# 13 — issue 16: the sequence number of the heartbeat a device_health row's last_seen_at
# comes from (a merge whose heartbeat is not above it is a replay, dispatcher/fleet/devicehealth.py),
# and the instance whose view the whole row is (NULL when mixed): the health leader skips its own.
MIGRATIONS.append(
    """
    ALTER TABLE device_health ADD COLUMN hb_seq INTEGER;
    ALTER TABLE device_health ADD COLUMN merged_by TEXT;
    """
)

# 14 — issue 13: cancel PIN tries, one token bucket per device shared by every instance
# (dispatcher/alerting/cancels.py): tokens left and the time of the last try (microseconds, UTC).
MIGRATIONS.append(
    """
    CREATE TABLE pin_tries (
        device_id TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        updated_us INTEGER NOT NULL
    );
    """
)

# 15 — issue 16: the health leader reads "rev > its last read, not its own rows" every second:
# merged_by in the rev index lets the scan skip its own rows without reading them.
MIGRATIONS.append(
    """
    DROP INDEX device_health_by_rev;
    CREATE INDEX device_health_by_rev ON device_health(rev, merged_by);
    """
)

# 16 — issue 13: devices cut off at the broker for flooding (dispatcher/fleet/quarantine.py), until
# (microseconds, UTC): released by any instance once past, including after a restart.
MIGRATIONS.append(
    """
    CREATE TABLE quarantines (
        device_id TEXT PRIMARY KEY,
        until_us INTEGER NOT NULL
    );
    """
)

# 17 — issue 16: which directory rows each version changed, so that an instance catches up
# by reading those rows instead of the whole directory (100,000 devices re-read per edit).
# Each change bumps the version and logs (version, table, id) in the same trigger: a reader
# that sees version V sees every change up to V. ``logged_from``: the log is complete only
# for versions above it (the version at this migration, then what retention pruned).
_DIRECTORY_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("practitioners", ("INSERT", "UPDATE", "DELETE")),
    ("sites", ("INSERT", "UPDATE", "DELETE")),
    ("conventions", ("INSERT", "UPDATE", "DELETE")),
    ("visits", ("INSERT", "UPDATE", "DELETE")),
    ("devices", ("INSERT", "UPDATE OF doc, state, hmac_key", "DELETE")),
)


def _change_logging_trigger(table: str, event: str) -> str:
    """Migration 3's trigger for ``event`` on ``table``, replaced by one that also logs the row."""
    verb = event.split()[0].lower()
    # An update logs the old id too when it changed: that id is gone from the directory.
    logged = {"insert": ["NEW.id"], "update": ["NEW.id", "OLD.id"], "delete": ["OLD.id"]}[verb]
    renamed_only = " AND OLD.id <> NEW.id" if verb == "update" else ""
    inserts = "".join(
        f" INSERT INTO directory_changes(seq, tbl, id) SELECT version, '{table}', {row}"
        f" FROM directory_version WHERE id = 1{renamed_only if row == 'OLD.id' else ''};"
        for row in logged
    )
    return f"""
    DROP TRIGGER {table}_{verb}_bumps_directory;
    CREATE TRIGGER {table}_{verb}_logs_directory AFTER {event} ON {table}
        BEGIN UPDATE directory_version SET version = version + 1 WHERE id = 1;{inserts} END;
    """


MIGRATIONS.append(
    """
    CREATE TABLE directory_changes (
        seq INTEGER NOT NULL,
        tbl TEXT NOT NULL,
        id TEXT NOT NULL
    );
    CREATE INDEX directory_changes_by_seq ON directory_changes(seq);
    ALTER TABLE directory_version ADD COLUMN logged_from INTEGER NOT NULL DEFAULT 0;
    UPDATE directory_version SET logged_from = version;
    """
    + "".join(_change_logging_trigger(t, event) for t, events in _DIRECTORY_TABLES for event in events)
)

# 18 — operator events scoped to conventions (a home visit's alarm when no alert could be
# raised): a JSON array of convention names, NULL for an event about an alert, a device or
# the whole system; and the topic of a system alarm's events, so that an instance starting
# mid-episode knows it is open.
MIGRATIONS.append(
    """
    ALTER TABLE operator_events ADD COLUMN scope TEXT;
    ALTER TABLE operator_events ADD COLUMN topic TEXT;
    CREATE INDEX operator_events_by_topic ON operator_events(topic, id) WHERE topic IS NOT NULL;
    CREATE INDEX operator_events_open_scoped ON operator_events(id)
        WHERE scope IS NOT NULL AND handled_by IS NULL;
    """
)

# 19 — the visits' own SMS (check, text to the fallback contact) in a durable outbox,
# written with the timer's transaction that decides them (dispatcher.store.base.SideTextRecord).
MIGRATIONS.append(
    """
    CREATE TABLE side_texts (
        key TEXT PRIMARY KEY,
        reference TEXT NOT NULL,
        phone TEXT NOT NULL,
        body TEXT NOT NULL,
        what TEXT NOT NULL,
        not_after REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        lease_owner TEXT,
        lease_until REAL,
        created_at REAL NOT NULL
    );
    CREATE INDEX side_texts_by_lease ON side_texts(lease_until);
    """
)
