"""systemd notifications for the device client (``Type=notify``, ``WatchdogSec=``), stdlib only.

systemd passes ``NOTIFY_SOCKET`` (a datagram socket path, or an abstract one
starting with ``@``) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` and
``WATCHDOG_PID``. The client says ``READY=1`` once started and
``WATCHDOG=1`` from its logic loop at least every half interval; if the loop
hangs (a deadlock, a stuck GPIO read), systemd kills and restarts it.
Outside systemd every call is a no-op, so the client runs the same anywhere.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """The watchdog period systemd expects for this process, or None if there is none."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None  # not meant for us (inherited by a child)
    try:
        return int(usec) / 1_000_000
    except ValueError:
        return None


class SystemdNotifier:
    """Sends ``sd_notify`` messages; pings the watchdog at most twice per interval."""

    def __init__(
        self, env: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        env = os.environ if env is None else env
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._interval = watchdog_interval_s(env)
        self._clock = clock
        self._last_ping = float("-inf")

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self._address is not None

    def notify(self, message: str) -> bool:
        """Send one message (``READY=1``, ``STATUS=...``); False if it could not be sent."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode())
            return True
        except OSError as exc:  # systemd restarting, socket gone: never fatal for the client
            log.warning("sd_notify %r a échoué : %s", message, exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """Ping the watchdog if half its interval has passed (cheap to call on every loop turn)."""
        if self._interval is None:
            return False
        now = self._clock()
        if now - self._last_ping < self._interval / 2:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace socket
    return value
