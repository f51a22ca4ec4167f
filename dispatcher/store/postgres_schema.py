"""PostgreSQL schema migrations, applied in order; ``schema_version`` records progress.

The tables mirror :mod:`dispatcher.store.schema` (SQLite) column for column,
with native types where PostgreSQL has them: ``jsonb`` for documents,
``timestamptz`` for instants, ``bytea`` for keys and raw payloads, identity
columns for row ids. Unix-second columns (``due_at``, ``lease_until``) stay
``double precision`` because the engine and the delivery compare them with
``time.time()``.

Migration ``n`` is ``MIGRATIONS[n - 1]``; each runs in its own transaction
together with the ``schema_version`` row that records it, under an advisory
lock so that several dispatcher instances starting at once migrate only once.
Never edit a shipped migration: append a new one.
"""

from __future__ import annotations

# Any constant: the key of the advisory lock taken while migrating.
MIGRATION_LOCK_KEY = 0x56494749  # "VIGI"

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

MIGRATIONS: list[str] = [
    # 1 — directory, alerts, escalation, notifications, timers, audit of rejections
    """
    CREATE TABLE practitioners (id text PRIMARY KEY, doc jsonb NOT NULL);
    CREATE TABLE sites (id text PRIMARY KEY, doc jsonb NOT NULL);
    CREATE TABLE conventions (id text PRIMARY KEY, doc jsonb NOT NULL);
    CREATE TABLE visits (
        id text PRIMARY KEY,
        practitioner_id text NOT NULL REFERENCES practitioners(id),
        ends_at timestamptz NOT NULL,
        doc jsonb NOT NULL
    );
    CREATE INDEX visits_by_practitioner ON visits(practitioner_id, ends_at);
    CREATE TABLE devices (
        id text PRIMARY KEY,
        doc jsonb NOT NULL,
        state text NOT NULL,
        hmac_key bytea NOT NULL,
        replay_high bigint NOT NULL DEFAULT -1,
        replay_seen bytea,
        last_fix jsonb,
        created_at timestamptz NOT NULL
    );
    CREATE TABLE alerts (
        id text PRIMARY KEY,
        device_id text NOT NULL REFERENCES devices(id),
        kind text NOT NULL,
        seq bigint NOT NULL,
        device_ts timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        gesture text NOT NULL,
        fix jsonb,
        raw bytea NOT NULL,
        state text NOT NULL,
        escalation jsonb,
        context jsonb,
        version integer NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL
    );
    CREATE INDEX alerts_by_state ON alerts(state);
    CREATE INDEX alerts_by_received ON alerts(received_at);
    -- recovery looks for these after every start; normally none
    CREATE INDEX alerts_unstarted ON alerts(received_at) WHERE escalation IS NULL;
    CREATE TABLE alert_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        alert_id text NOT NULL REFERENCES alerts(id),
        at timestamptz NOT NULL,
        kind text NOT NULL,
        detail jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX alert_events_by_alert ON alert_events(alert_id, id);
    CREATE TABLE notifications (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        alert_id text NOT NULL REFERENCES alerts(id),
        contact_id text NOT NULL,
        contact_name text NOT NULL,
        phone text NOT NULL,
        channel text NOT NULL,
        purpose text NOT NULL,
        tier integer NOT NULL,
        round integer NOT NULL,
        status text NOT NULL,
        provider_sid text UNIQUE,
        error text,
        attempts integer NOT NULL DEFAULT 0,
        lease_owner text,
        lease_until double precision,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        -- one row per decision: two instances deciding the same send collide here
        UNIQUE (alert_id, contact_id, channel, purpose, tier, round)
    );
    CREATE INDEX notifications_by_status ON notifications(status);
    CREATE INDEX notifications_by_phone ON notifications(phone, created_at);
    CREATE TABLE timers (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        alert_id text NOT NULL REFERENCES alerts(id),
        kind text NOT NULL,
        due_at double precision NOT NULL,
        payload jsonb NOT NULL DEFAULT '{}',
        lease_owner text,
        lease_until double precision
    );
    CREATE INDEX timers_by_due ON timers(due_at);
    CREATE INDEX timers_by_alert ON timers(alert_id);
    CREATE TABLE rejections (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        device_id text,
        topic text NOT NULL,
        reason text NOT NULL,
        detail text NOT NULL
    );
    CREATE TABLE device_health (
        device_id text PRIMARY KEY REFERENCES devices(id),
        last_seen_at timestamptz,
        status text,
        battery_pct integer,
        signal_dbm integer,
        firmware text,
        uptime_s bigint,
        flags text NOT NULL DEFAULT '[]'
    );
    CREATE TABLE operator_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        kind text NOT NULL,
        alert_id text,
        device_id text,
        message text NOT NULL,
        handled_by text
    );
    """,
]

# 2 — access control, audit trail, notes and retention (issue #5: API and console),
# mirroring SQLite migration 2. The audit log is append-only: UPDATE, DELETE and
# TRUNCATE raise an integrity violation (SQLSTATE 23000), as SQLite's RAISE(ABORT) does.
MIGRATIONS.append(
    """
    CREATE TABLE users (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username text NOT NULL UNIQUE,
        display_name text NOT NULL,
        password_hash text NOT NULL,
        role text NOT NULL CHECK (role IN ('admin', 'operator', 'practitioner')),
        practitioner_id text,
        conventions jsonb NOT NULL DEFAULT '[]',
        disabled boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL
    );
    CREATE TABLE sessions (
        token_hash text PRIMARY KEY,
        user_id bigint NOT NULL REFERENCES users(id),
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX sessions_by_expiry ON sessions(expires_at);
    CREATE INDEX sessions_by_user ON sessions(user_id);
    CREATE TABLE login_failures (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username text NOT NULL,
        ip text NOT NULL,
        at timestamptz NOT NULL
    );
    CREATE INDEX login_failures_by_key ON login_failures(username, ip, at);
    CREATE TABLE audit_log (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        user_id bigint,
        username text,
        action text NOT NULL,
        target_kind text,
        target_id text,
        ip text,
        detail jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_by_target ON audit_log(target_kind, target_id);
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'integrity_constraint_violation';
    END $$;
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
    CREATE TABLE alert_notes (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        alert_id text NOT NULL REFERENCES alerts(id),
        at timestamptz NOT NULL,
        user_id bigint,
        author text NOT NULL,
        text text NOT NULL
    );
    CREATE INDEX alert_notes_by_alert ON alert_notes(alert_id, id);
    ALTER TABLE alerts ADD COLUMN location_purged_at timestamptz;
    """
)

# 3 — directory version (see the SQLite migration 3): one row bumped by statement
# triggers on every change to what the in-memory directory snapshot holds. On
# devices only the directory columns count, not the replay window / last fix that
# every alert updates.
MIGRATIONS.append(
    """
    CREATE TABLE directory_version (
        id integer PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL
    );
    INSERT INTO directory_version(id, version) VALUES (1, 0);
    CREATE FUNCTION bump_directory_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE directory_version SET version = version + 1 WHERE id = 1;
        RETURN NULL;
    END $$;
    CREATE TRIGGER practitioners_bump_directory AFTER INSERT OR UPDATE OR DELETE ON practitioners
        FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
    CREATE TRIGGER sites_bump_directory AFTER INSERT OR UPDATE OR DELETE ON sites
        FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
    CREATE TRIGGER conventions_bump_directory AFTER INSERT OR UPDATE OR DELETE ON conventions
        FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
    CREATE TRIGGER visits_bump_directory AFTER INSERT OR UPDATE OR DELETE ON visits
        FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
    CREATE TRIGGER devices_bump_directory
        AFTER INSERT OR DELETE OR UPDATE OF doc, state, hmac_key ON devices
        FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
    """
)

# 4 — device health with N instances (see the SQLite migration 4): merged
# observations ordered by a sequence, and the leases that elect one health leader.
MIGRATIONS.append(
    """
    CREATE SEQUENCE device_health_rev;
    ALTER TABLE device_health ADD COLUMN status_at timestamptz;
    ALTER TABLE device_health ADD COLUMN rev bigint NOT NULL DEFAULT 0;
    CREATE INDEX device_health_by_rev ON device_health(rev);
    CREATE TABLE leases (
        name text PRIMARY KEY,
        owner text NOT NULL,
        until double precision NOT NULL
    );
    """
)

# 5 — what a notification must say, decided with it (see the SQLite migration 5).
MIGRATIONS.append(
    """
    ALTER TABLE notifications ADD COLUMN duress boolean NOT NULL DEFAULT false, ADD COLUMN actor text;
    """
)

# 6 — home-visit timers and the practitioner's incident reports (see the SQLite
# migration 6).
MIGRATIONS.append(
    """
    CREATE TABLE visit_timers (
        visit_id text PRIMARY KEY,
        practitioner_id text NOT NULL,
        phase text NOT NULL,
        due_at double precision,
        state jsonb NOT NULL,
        version integer NOT NULL,
        alert_id text REFERENCES alerts(id),
        lease_owner text,
        lease_until double precision,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE INDEX visit_timers_by_due ON visit_timers(due_at);
    CREATE INDEX visit_timers_by_practitioner ON visit_timers(practitioner_id, created_at);
    CREATE TABLE incident_reports (
        alert_id text PRIMARY KEY REFERENCES alerts(id),
        doc jsonb NOT NULL,
        author text NOT NULL,
        user_id bigint,
        updated_at timestamptz NOT NULL
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

# 8 — commune contours (see the SQLite migration 8).
MIGRATIONS.append(
    """
    CREATE TABLE communes (
        code text PRIMARY KEY,
        nom text NOT NULL,
        departement text NOT NULL,
        geometry bytea NOT NULL
    );
    CREATE INDEX communes_by_departement ON communes(departement);
    CREATE TABLE communes_version (
        id integer PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL
    );
    INSERT INTO communes_version(id, version) VALUES (1, 0);
    """
)

# 9 — issue 13: inbound SMS ids (see the SQLite migration 9), and the argon2 PIN
# hashes erased from the alerts' stored contexts.
MIGRATIONS.append(
    """
    CREATE TABLE inbound_messages (sid text PRIMARY KEY, at timestamptz NOT NULL);
    UPDATE alerts
        SET context = context #- '{practitioner,cancel_pin_hash}' #- '{practitioner,duress_pin_hash}'
            #- '{site,cancel_pin_hash}' #- '{site,duress_pin_hash}'
        WHERE jsonb_typeof(context) = 'object';
    """
)

# 10 — issue 17: provider records nobody may adopt (see the SQLite migration 10).
MIGRATIONS.append(
    """
    CREATE TABLE disowned_provider_records (sid text PRIMARY KEY, at timestamptz NOT NULL);
    CREATE INDEX notifications_in_doubt ON notifications(phone, channel) WHERE provider_sid IS NULL;
    """
)

# 11 — issue 15: live positions of open alerts (see the SQLite migration 11).
MIGRATIONS.append(
    """
    CREATE TABLE alert_positions (
        id bigserial PRIMARY KEY,
        alert_id text NOT NULL REFERENCES alerts(id),
        lat double precision NOT NULL,
        lon double precision NOT NULL,
        accuracy_m double precision,
        at timestamptz NOT NULL,
        received_at timestamptz NOT NULL
    );
    CREATE INDEX alert_positions_latest ON alert_positions(alert_id, at DESC, id DESC);
    """
)

# 12 — issue 15: responder links (see the SQLite migration 12).
MIGRATIONS.append(
    """
    CREATE TABLE responder_links (
        token_hash text PRIMARY KEY,
        alert_id text NOT NULL REFERENCES alerts(id),
        contact_id text NOT NULL,
        created_at timestamptz NOT NULL
    );
    CREATE INDEX responder_links_by_alert ON responder_links(alert_id, contact_id);
    """
)

# 13 — issue 16: device_health.hb_seq (see the SQLite migration 13).
MIGRATIONS.append(
    """
    ALTER TABLE device_health ADD COLUMN hb_seq bigint;
    ALTER TABLE device_health ADD COLUMN merged_by text;
    """
)

# 14 — issue 13: cancel PIN tries shared by every instance (see the SQLite migration 14).
MIGRATIONS.append(
    """
    CREATE TABLE pin_tries (
        device_id text PRIMARY KEY,
        tokens double precision NOT NULL,
        updated_at timestamptz NOT NULL
    );
    """
)

# 15 — issue 16: device_health_by_rev on (rev, merged_by) (see the SQLite migration 15).
MIGRATIONS.append(
    """
    DROP INDEX device_health_by_rev;
    CREATE INDEX device_health_by_rev ON device_health(rev, merged_by);
    """
)

# 16 — issue 13: devices cut off at the broker for flooding (see the SQLite migration 16).
MIGRATIONS.append(
    """
    CREATE TABLE quarantines (
        device_id text PRIMARY KEY,
        until_at timestamptz NOT NULL
    );
    """
)

# 17 — issue 16: which directory rows each version changed (see the SQLite migration 17). The
# version is bumped once per statement; each row is logged before it changes with the number
# that bump will give, read under the version row's lock: a second writer waits for the
# first one's commit and numbers its rows after it, so a reader that sees version V sees
# every row change numbered up to V. A BEFORE trigger, so that it runs before the
# statement's bump whatever the trigger order; a row it logs whose statement then changes
# nothing (an upsert that conflicts) costs a re-read, never a miss.
MIGRATIONS.append(
    """
    CREATE TABLE directory_changes (
        seq bigint NOT NULL,
        tbl text NOT NULL,
        id text NOT NULL
    );
    CREATE INDEX directory_changes_by_seq ON directory_changes(seq);
    ALTER TABLE directory_version ADD COLUMN logged_from bigint NOT NULL DEFAULT 0;
    UPDATE directory_version SET logged_from = version;
    CREATE FUNCTION log_directory_change() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        next_version bigint;
    BEGIN
        SELECT version + 1 INTO next_version FROM directory_version WHERE id = 1 FOR UPDATE;
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO directory_changes(seq, tbl, id) VALUES (next_version, TG_TABLE_NAME, OLD.id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO directory_changes(seq, tbl, id) VALUES (next_version, TG_TABLE_NAME, NEW.id);
            RETURN NEW;
        END IF;
        RETURN OLD;
    END $$;
    """
    + "".join(
        f"""
    CREATE TRIGGER {table}_log_directory BEFORE INSERT OR DELETE OR UPDATE{columns} ON {table}
        FOR EACH ROW EXECUTE FUNCTION log_directory_change();"""
        for table, columns in (
            ("practitioners", ""),
            ("sites", ""),
            ("conventions", ""),
            ("visits", ""),
            ("devices", " OF doc, state, hmac_key"),  # not the replay window or fix every alert writes
        )
    )
)

# 18 — operator events scoped to conventions, and system alarms' topics (see the SQLite
# migration 18).
MIGRATIONS.append(
    """
    ALTER TABLE operator_events ADD COLUMN scope text[];
    ALTER TABLE operator_events ADD COLUMN topic text;
    CREATE INDEX operator_events_by_topic ON operator_events(topic, id) WHERE topic IS NOT NULL;
    CREATE INDEX operator_events_open_scoped ON operator_events(id)
        WHERE scope IS NOT NULL AND handled_by IS NULL;
    """
)

# 19 — the visits' durable outbox of SMS (see the SQLite migration 19).
MIGRATIONS.append(
    """
    CREATE TABLE side_texts (
        key text PRIMARY KEY,
        reference text NOT NULL,
        phone text NOT NULL,
        body text NOT NULL,
        what text NOT NULL,
        not_after double precision NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        lease_owner text,
        lease_until double precision,
        created_at double precision NOT NULL
    );
    CREATE INDEX side_texts_by_lease ON side_texts(lease_until);
    """
)
