"""Is this dispatcher really working? ``/healthz`` and systemd's watchdog both ask here.

A dispatcher whose ingest loop has died still answers HTTP, so an HTTP probe
alone would say ``ok`` while no alert is stored. Every background loop of the
service runs until shutdown; one that has ended is dead, and the process is
then unhealthy: ``/healthz`` answers 503 and the watchdog stops being fed, so
systemd (``WatchdogSec=`` in deploy/systemd/vigie-dispatcher.service) kills and
restarts it. The sd_notify client is the device's (``device/watchdog.py``, stdlib only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from device.watchdog import SystemdNotifier, watchdog_interval_s

log = logging.getLogger(__name__)

DeadTasks = Callable[[], list[str]]


async def feed_watchdog(dead_tasks: DeadTasks, *, env: Mapping[str, str] | None = None) -> None:
    """Say READY=1 (the broker session and the loops are up), then WATCHDOG=1 while ``dead_tasks()`` is empty.

    Outside systemd (no ``NOTIFY_SOCKET``) this returns at once. Once a loop is
    dead the pings stop for good: a restart is the only cure. ``env`` defaults
    to the process environment (where systemd puts ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``).
    """
    notifier = SystemdNotifier(env)
    if not notifier.enabled:
        return
    notifier.ready("en service")
    interval_s = watchdog_interval_s(env)
    if interval_s is None:
        return  # Type=notify without WatchdogSec: nothing to feed
    while not (dead := dead_tasks()):
        notifier.watchdog()
        await asyncio.sleep(interval_s / 4)
    log.critical(
        "tâche(s) de fond %s arrêtée(s) : plus de signal au chien de garde, systemd va redémarrer le"
        " dispatcher",
        dead,
    )
    notifier.status(f"arrêt : tâche(s) de fond {', '.join(dead)} morte(s)")
