"""Composition root: builds every part of one dispatcher instance and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import secrets
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from dispatcher.alerting.admission import Admission, admission_policy
from dispatcher.alerting.cancels import PinGuard
from dispatcher.alerting.delivery import Delivery
from dispatcher.alerting.engine import Engine
from dispatcher.alerting.ingest import Ingest
from dispatcher.alerting.mqtt import MqttBridge
from dispatcher.alerting.notifier import TwilioNotifier
from dispatcher.alerting.ratelimit import BucketPolicy
from dispatcher.alerting.reconciler import Reconciler
from dispatcher.alerting.rejectlog import RejectionLog
from dispatcher.alerting.responder_links import ResponderLinks
from dispatcher.directory.fallback import deployment_recipient
from dispatcher.directory.location import LocationPolicy
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.events import RESYNC_EVENT, EventBus
from dispatcher.fleet.broker_control import BrokerControl
from dispatcher.fleet.health import HealthMonitor
from dispatcher.fleet.instance_claim import InstanceClaim, InstanceIdInUse
from dispatcher.fleet.presence import AlertTakerPresence
from dispatcher.fleet.quarantine import Quarantine
from dispatcher.live_alerts import LiveAlerts
from dispatcher.liveness import feed_watchdog
from dispatcher.metrics import Metrics
from dispatcher.retention import run_retention
from dispatcher.settings import DispatcherSettings
from dispatcher.store import is_postgres, open_store
from dispatcher.store.base import Store
from dispatcher.visits.runner import VisitTimers
from dispatcher.web.app import create_app
from dispatcher.web.console.coalesce import coalesce

log = logging.getLogger(__name__)
#: The console feed's WebSocket frames go uncompressed. Deflating a snapshot in a surge
#: (thousands of open alerts, megabytes of JSON) held the event loop, and the alerts
#: arriving, for tens of milliseconds; a push costs less without it; and a compressed
#: stream mixing a page's own data with what others can influence is what CRIME-style
#: attacks measure (docs/performance.md, "A console opening in a surge").
WS_COMPRESSION = False


@dataclass
class Dispatcher:
    """One running instance: its parts, exposed for the API and the tests."""

    settings: DispatcherSettings
    store: Store
    cache: DirectoryCache
    bus: EventBus
    metrics: Metrics
    engine: Engine
    ingest: Ingest
    health: HealthMonitor
    bridge: MqttBridge
    notifier: TwilioNotifier
    delivery: Delivery
    visits: VisitTimers
    control: BrokerControl
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # Why this process must stop (its instance id claimed by another live process), once it must.
    must_stop: asyncio.Future[InstanceIdInUse] = field(default_factory=asyncio.Future)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_crash_loudly)
        self.tasks.append(task)

    def dead_tasks(self) -> list[str]:
        """Background loops that ended: each should run until shutdown, so any is a dead dispatcher."""
        return [task.get_name() for task in self.tasks if task.done()]


def _crash_loudly(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("tâche de fond %s arrêtée sur une erreur", task.get_name(), exc_info=task.exception())


async def _flush_windows(d: Dispatcher, period_s: float = 5.0) -> None:
    """Replay windows (alerts, cancels, positions) live in memory; persist them now and then (and at stop)."""
    while True:
        await asyncio.sleep(period_s)
        await _save_state(d)


async def _save_state(d: Dispatcher) -> None:
    """Persist what lives in memory between flushes: replay windows, last known positions."""
    changed = d.ingest.changed_windows()  # only these: 100,000 windows are 50 MB to rewrite
    try:
        if changed:
            await d.store.save_replay_windows(changed)
    except Exception:
        d.ingest.unsaved_windows(changed)
        log.exception("enregistrement des fenêtres anti-rejeu impossible")
    try:
        await d.cache.save_fixes()  # last known positions from heartbeats (RGPD retention applies)
    except Exception:
        log.exception("enregistrement des dernières positions connues impossible")


async def _relay_events(dsn: str, bus: EventBus, metrics: Metrics) -> None:
    """The consoles' live events shared with the other instances (they share the database)."""
    from dispatcher.event_relay import PostgresEventRelay

    relay = PostgresEventRelay(dsn, bus=bus, metrics=metrics, compact=lambda e: coalesce(e, RESYNC_EVENT))
    bus.relay_to(relay.send)
    try:
        await relay.run()
    finally:
        bus.relay_to(None)


async def _claim_instance_id(store: Store, settings: DispatcherSettings) -> InstanceClaim | None:
    """This process's claim on its instance id, before anything is taken back (PostgreSQL only)."""
    if not is_postgres(settings.database_url):
        return None
    claim = InstanceClaim(store, settings.instance_id, lease_s=settings.instance_lease_s)
    try:
        await claim.take()
    except BaseException:
        await store.close()
        raise
    return claim


async def _keep_claim(claim: InstanceClaim, must_stop: asyncio.Future[InstanceIdInUse]) -> None:
    try:
        await claim.keep()
    except InstanceIdInUse as exc:  # expected, and said in one line: no traceback
        log.critical("%s", exc)
        must_stop.set_result(exc)  # serve() stops the process, as on SIGTERM


async def _share_group(store: Store) -> str:
    """The dispatchers' secret $share group name, the same for every instance on ``store``."""
    return await store.deployment_secret("mqtt_share_group", f"vigie-{secrets.token_hex(16)}")


def freeze_what_was_loaded() -> tuple[int, int]:
    """Keep the objects loaded at start out of the garbage collector's full passes.

    Called once everything the process holds for its whole life exists: the
    directory, the devices' health and their windows (a directory reload reuses
    every unchanged object), and the web side (its routes, dependency graphs
    and pydantic schemas, about 50,000 objects). With 100,000 devices a full
    collection walking them all held the GIL for 0.1-0.3 s at a time; the web
    side alone, frozen too late, added 15 ms to every full pass at 100 alerts/s
    (docs/performance.md, sixteenth round). Frozen objects are still freed by
    reference counting; only a reference cycle already alive now and dropped
    later is never collected, a one-time cost bounded by what starting up holds.

    Returns (objects frozen, objects the full passes still walk).
    """
    gc.freeze()
    return gc.get_freeze_count(), len(gc.get_objects())


@contextlib.asynccontextmanager
async def running_dispatcher(settings: DispatcherSettings) -> AsyncIterator[Dispatcher]:
    """Start a dispatcher (store, broker session, loops); stop it on exit."""
    store = await open_store(settings.database_url)
    claim = await _claim_instance_id(store, settings)
    cache = DirectoryCache(store)
    await cache.refresh()
    await cache.refresh_communes_if_changed()
    await cache.load_last_fixes()
    # One dispatcher on SQLite writes every alert itself: its consoles may trust its memory.
    bus = EventBus(alerts=LiveAlerts(sole_writer=not is_postgres(settings.database_url)))
    bus.remember_system_alarms(await store.open_system_alarms())
    metrics = Metrics()
    health = HealthMonitor(
        store=store, cache=cache, bus=bus, metrics=metrics, instance_id=settings.instance_id
    )
    await health.load()
    control = BrokerControl(timeout_s=settings.mqtt.control_timeout_s, store=store, metrics=metrics, bus=bus)
    quarantine = Quarantine(settings.ingest, store=store, metrics=metrics, control=control)
    ingest = Ingest(
        store=store,
        cache=cache,
        health=health,
        metrics=metrics,
        bus=bus,
        admission=Admission(admission_policy(settings.ingest)),
        rejections=RejectionLog(settings.ingest.rejection_log_interval_s),
        quarantine=quarantine,
    )
    await ingest.load_windows()
    policy = LocationPolicy(max_fix_age_s=settings.max_fix_age_s, max_accuracy_m=settings.max_fix_accuracy_m)
    links = ResponderLinks(store, settings.twilio.public_base_url)
    engine = Engine(
        store=store,
        cache=cache,
        downlinks=ingest,
        bus=bus,
        metrics=metrics,
        location_policy=policy,
        instance_id=settings.instance_id,
        fallback_contact=deployment_recipient(
            settings.fallback.name, settings.fallback.phone, settings.fallback.channels
        ),
        pin_guard=PinGuard(
            BucketPolicy(burst=settings.cancel_pin_tries, refill_per_s=1 / settings.cancel_pin_refill_s),
            store=store,  # shared by every instance on this database
        ),
        renotify_s=settings.delivery.renotify_s,
        links=links,
    )
    notifier = TwilioNotifier(settings=settings.twilio, max_connections=settings.twilio.max_connections)
    delivery = Delivery(
        store=store,
        notifier=notifier,
        metrics=metrics,
        bus=bus,
        instance_id=settings.instance_id,
        context_of=engine.context_of,
        on_failed=engine.notification_failed,
        on_outage=engine.provider_outage,
        on_waiting=engine.notification_waiting,
        retry_base_s=settings.delivery.retry_base_s,
        retry_max_s=settings.delivery.retry_max_s,
        notice_retry_s=settings.delivery.notice_retry_s,
        links=links,
    )
    engine.attach_delivery(delivery)
    reconciler = Reconciler(
        store=store,
        provider=notifier,
        bus=bus,
        on_failed=engine.notification_failed,
        kick=delivery.kick,
        settle_s=settings.delivery.reconcile_settle_s,
        stuck_after_s=settings.delivery.stuck_after_s,
        interval_s=settings.delivery.reconcile_interval_s,
    )
    bridge = MqttBridge(
        settings.mqtt,
        on_message=ingest.submit,
        share_group=await _share_group(store),
        on_control_answer=control.answered,
        takes_alerts=settings.role == "all",
    )
    ingest.attach(engine=engine, bridge=bridge)
    control.attach(bridge)  # before the session starts: a cut must always be recorded, hence released
    visits = VisitTimers(
        store=store,
        cache=cache,
        engine=engine,
        notifier=notifier,
        bus=bus,
        settings=settings.visits,
        location_policy=policy,
        instance_id=settings.instance_id,
    )
    d = Dispatcher(
        settings, store, cache, bus, metrics, engine, ingest, health, bridge, notifier, delivery, visits,
        control,
    )  # fmt: skip
    try:
        if claim is not None:
            d.spawn(_keep_claim(claim, d.must_stop), "instance-claim")
        await engine.recover()
        await bridge.start()
        d.spawn(ingest.run(), "ingest")
        d.spawn(quarantine.run(), "quarantine")
        d.spawn(engine.run_timers(), "timers")
        d.spawn(visits.run(), "visit-timers")
        d.spawn(reconciler.run(), "reconciliation")
        d.spawn(health.run(), "health")
        presence = AlertTakerPresence(
            store=store,
            bus=bus,
            metrics=metrics,
            instance_id=settings.instance_id,
            takes_alerts=lambda: bridge.takes_alerts and bridge.is_connected,
            grace_s=settings.no_alert_taker_alarm_s,
            shared=is_postgres(settings.database_url),
        )
        d.spawn(presence.run(), "alert-takers")
        if is_postgres(settings.database_url):
            d.spawn(_relay_events(settings.database_url, bus, metrics), "event-relay")
        d.spawn(cache.run(), "directory-refresh")
        d.spawn(_flush_windows(d), "replay-windows")
        d.spawn(
            run_retention(
                store,
                cache,
                settings.location_retention_days,
                interval_s=settings.api.retention_interval_s,
                inbound_sid_days=settings.inbound_sid_retention_days,
                alerts=bus.alerts,
            ),
            "retention",
        )
        yield d
    finally:
        for task in d.tasks:
            task.cancel()
        await asyncio.gather(*d.tasks, return_exceptions=True)
        # The ingest has stopped: whatever it admitted since the last periodic flush (cancels,
        # heartbeats) must be known to the next start, or their replay would be accepted again.
        await _save_state(d)
        try:
            await health.flush()  # the heartbeats' sequence numbers live in device_health
        except Exception:
            log.exception("report des derniers heartbeats dans device_health impossible")
        await delivery.stop()
        await visits.sms.stop()
        await bridge.stop()
        await notifier.aclose()
        if claim is not None:
            await claim.release()  # last: a restart under this id must find everything given back
        await store.close()


# Besides provider connections: the store, the broker, console WebSockets, callbacks.
FILE_DESCRIPTOR_HEADROOM = 1024


def fit_open_file_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (capped by the hard limit); return the new soft limit.

    Every provider connection is a file descriptor, and Linux's default soft
    limit (1,024) is below the pool a slow provider fills at 100 alerts/s.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning(
            "limite de fichiers ouverts %d, sous les %d que le pool de connexions au fournisseur"
            " peut demander : augmentez LimitNOFILE",
            target,
            needed,
        )
    return target


def proxy_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn options: believe ``X-Forwarded-For``/``-Proto`` only from the configured proxies.

    uvicorn's own default trusts them from 127.0.0.1, so any local client (or a
    proxy that does not overwrite the header) could claim any address — new
    login budgets for an attacker, a lock-out for a victim, lies in the audit
    log. With no trusted proxy, the TCP peer is the client.
    """
    return {"proxy_headers": bool(trusted_proxies), "forwarded_allow_ips": list(trusted_proxies) or None}


async def serve(settings: DispatcherSettings) -> None:
    """Run the dispatcher and its HTTP API (REST, console, webhooks) until interrupted."""
    from dispatcher.directory.geocoding import AddressGeocoder

    fit_open_file_limit(settings.twilio.max_connections + FILE_DESCRIPTOR_HEADROOM)
    # The event loop shares the GIL with worker threads (the store's, a directory read's): it
    # waits for it up to one switch interval each time, an alert several times on its path.
    sys.setswitchinterval(settings.gil_switch_interval_s)

    async with (
        running_dispatcher(settings) as d,
        AddressGeocoder(settings.geocoder) as geocoder,
    ):
        app = create_app(
            settings=settings,
            inbox=d.engine,
            metrics=d.metrics,
            ready=d.bridge,
            dispatcher=d,
            geocoder=geocoder,
        )
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            # Open console WebSockets must not hold a restart (systemd) hostage.
            timeout_graceful_shutdown=5,
            ws_per_message_deflate=WS_COMPRESSION,
            **proxy_options(settings.api.trusted_proxies),
        )
        server = uvicorn.Server(config)
        # The process is this dispatcher's own: what it holds from now until it stops leaves the
        # collector's full passes (not in the demo or a test session, which hold other things).
        frozen, walked = freeze_what_was_loaded()
        log.info(
            "mémoire : %d objets du démarrage gelés (hors des passes complètes du ramasse-miettes),"
            " %d suivis",
            frozen,
            walked,
        )
        watchdog = asyncio.create_task(feed_watchdog(d.dead_tasks))
        d.must_stop.add_done_callback(lambda _: setattr(server, "should_exit", True))
        log.info(
            "dispatcher %s en service sur http://%s:%s",
            settings.instance_id,
            settings.http_host,
            settings.http_port,
        )
        try:
            await server.serve()
        finally:
            watchdog.cancel()
            log.info("dispatcher %s : arrêt en cours", settings.instance_id)
    log.info("dispatcher %s arrêté", settings.instance_id)
    if d.must_stop.done():
        raise d.must_stop.result()
