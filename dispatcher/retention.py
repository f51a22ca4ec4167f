"""RGPD retention: location data is erased after ``location_retention_days``.

What goes (see :meth:`dispatcher.store.base.AccessStore.purge_locations`): GPS
fixes and signed payloads of old alerts, their resolved address and
coordinates, the live positions their device sent while they were open,
devices' last known positions, and home visits (address, floor, door code)
that ended before the cutoff. What stays: the alert itself, its
timeline, its commune and département, so that statistics remain possible.

The ids of received SMS (``inbound_messages``, remembered so that a replayed
webhook does nothing) are forgotten after ``inbound_sid_retention_days``
(default 365). Not personal data, a few dozen bytes per SMS, but one row per
reply forever without this. Why so long: Twilio's signature carries no date,
so a webhook captured and replayed after its id is forgotten is taken as new;
a coded "1 K42" could then acknowledge a later alert with the same code that
notified the same phone. A year makes such a capture stale.

Run by the dispatcher every ``api.retention_interval_s`` and by ``vigie purge``.
The dispatcher's pass also trims the directory's change log (ids of edited
rows, by version) to its last :data:`DIRECTORY_CHANGES_KEPT` versions: an
instance further behind than that reads the whole directory instead.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

from dispatcher.audit import RETENTION_PURGE, Auditor
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.live_alerts import LiveAlerts
from dispatcher.store.base import PurgeReport, Store

log = logging.getLogger(__name__)


#: Default of ``inbound_sid_retention_days`` (settings): how long a received SMS's id is remembered.
INBOUND_SID_RETENTION_DAYS = 365

#: Directory versions whose changed rows stay listed (an instance polls every second).
DIRECTORY_CHANGES_KEPT = 10_000


def summary(report: PurgeReport) -> str:
    """What a pass erased, in French: the line of ``vigie purge`` and of the dispatcher's log."""
    return (
        f"positions effacées de {report.alerts} alerte(s), {report.visits} visite(s) "
        f"supprimée(s), {report.last_fixes} dernière(s) position(s) de balise effacée(s), "
        f"{report.positions} position(s) en direct supprimée(s), "
        f"{report.sessions} session(s) expirée(s), {report.login_failures} échec(s) de connexion, "
        f"{report.inbound_messages} identifiant(s) de SMS reçu(s) oublié(s)"
    )


async def purge(
    store: Store,
    retention_days: int,
    *,
    inbound_sid_days: int = INBOUND_SID_RETENTION_DAYS,
    now: datetime | None = None,
) -> PurgeReport:
    """Erase location data older than ``retention_days``, forget received SMS ids older than
    ``inbound_sid_days``, and audit that location data was erased."""
    if retention_days < 1 or inbound_sid_days < 1:
        raise ValueError("les durées de rétention sont d'au moins un jour")
    now = now or datetime.now(UTC)
    report = await store.purge_locations(now - timedelta(days=retention_days), now=now)
    forgotten = await store.forget_inbound_messages(now - timedelta(days=inbound_sid_days))
    report = replace(report, inbound_messages=forgotten)
    if report.alerts or report.visits or report.last_fixes or report.positions:
        await Auditor(store).record(None, RETENTION_PURGE, retention_days=retention_days, **asdict(report))
    return report


async def run_retention(
    store: Store,
    cache: DirectoryCache,
    retention_days: int,
    *,
    interval_s: float,
    inbound_sid_days: int = INBOUND_SID_RETENTION_DAYS,
    alerts: LiveAlerts | None = None,
) -> None:
    """Purge now, then every ``interval_s``, until cancelled; failures are logged and retried.

    ``alerts``: the console's view of recent alerts, forgotten when alerts were
    purged (their location changes without a new version).
    """
    while True:
        try:
            report = await purge(store, retention_days, inbound_sid_days=inbound_sid_days)
            if report.alerts and alerts is not None:
                alerts.forget()
            if report.visits or report.last_fixes:
                await cache.refresh()  # the hot path must not keep erased visits in memory
            # By age, not by asking the store: a heartbeat's fix noted but not yet
            # saved is recent, and must not be forgotten.
            cache.forget_fixes_before(datetime.now(UTC) - timedelta(days=retention_days))
            await store.prune_directory_changes(DIRECTORY_CHANGES_KEPT)
            log.info("purge RGPD (rétention) : %s", summary(report))
        except Exception:
            log.exception("purge RGPD (rétention) en échec ; nouvel essai au prochain passage")
        await asyncio.sleep(interval_s)
