"""Dynamic-security commands over the dispatcher's own MQTT session, and the broker's answers to them.

The quarantine (dispatcher/fleet/quarantine.py) and the revocation of a device
(``POST /api/devices/{id}/revoke``) change a device's standing at the broker by
publishing commands (dispatcher/fleet/dynsec_commands.py) on
``$CONTROL/dynamic-security/v1``; Mosquitto answers each message on
``$CONTROL/dynamic-security/v1/response``, to the sender only, and only if the
sender may read it (``broker_config/acl`` grants the dispatchers both).
:class:`dispatcher.alerting.mqtt.MqttBridge` subscribes to the answers and hands them to
:meth:`BrokerControl.answered`; each batch carries its own correlation id.

A batch the broker refuses (an error in an answer) or does not answer within
``control_timeout_s`` raises one operator alarm, in French, naming the device
and what it means for it, and counts ``vigie_broker_command_failures_total``
by action and reason: the caller must not carry on as if it had worked.
Everything runs on the event loop (paho is driven by it: dispatcher/alerting/mqtt.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count
from typing import TYPE_CHECKING, Any, Protocol

from dispatcher.alerting import broker_logs, texts
from dispatcher.fleet.dynsec_commands import (
    CONTROL_TOPIC,
    BrokerAction,
    answer_errors,
    request_payload,
    responses_by_correlation,
    tagged,
)

if TYPE_CHECKING:
    from dispatcher.events import EventBus
    from dispatcher.metrics import Metrics
    from dispatcher.store.base import Store

log = logging.getLogger(__name__)

ALARM_LABEL = "commande broker"


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None: ...


@dataclass(frozen=True)
class Sent:
    """A batch published (or not: ``answer`` is None without a session), awaiting the broker's answer."""

    commands: list[dict[str, Any]]
    correlation: str
    answer: asyncio.Future[list[dict[str, Any]]] | None


class BrokerControl:
    """Sends dynamic-security batches and tells whether the broker applied them."""

    def __init__(self, *, timeout_s: float, store: Store, metrics: Metrics, bus: EventBus) -> None:
        self._timeout_s = timeout_s
        self._store = store
        self._metrics = metrics
        self._bus = bus
        self._broker: Publisher | None = None
        self._prefix = f"vigie-{secrets.token_hex(6)}-"  # this process's batches, whoever else sends some
        self._numbers = count(1)
        self._waiting: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}

    def attach(self, broker: Publisher) -> None:
        """The MQTT session that carries the commands (the dispatcher's own)."""
        self._broker = broker

    def send(self, commands: Sequence[dict[str, Any]]) -> Sent:
        """Publish ``commands`` now (on the event loop); :meth:`confirm` reads the outcome."""
        if self._broker is None:
            log.error(broker_logs.CONTROL_NO_SESSION, ", ".join(c["command"] for c in commands))
            return Sent(list(commands), "", None)
        correlation = f"{self._prefix}{next(self._numbers)}"
        batch = tagged(commands, correlation)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = answer
        self._broker.publish(CONTROL_TOPIC, request_payload(batch), qos=1)
        return Sent(batch, correlation, answer)

    def answered(self, payload: bytes) -> None:
        """One message on the answers' topic (from the bridge, on the event loop)."""
        for correlation, responses in responses_by_correlation(payload).items():
            answer = self._waiting.pop(correlation, None)
            if answer is not None and not answer.done():
                answer.set_result(responses)

    async def confirm(self, sent: Sent, *, action: BrokerAction, device_id: str) -> bool:
        """True if the broker applied every command of ``sent``; otherwise one operator alarm, counted."""
        if sent.answer is None:
            return await self._failed(action, device_id, "unsent", texts.broker_unsent())
        try:
            responses = await asyncio.wait_for(asyncio.shield(sent.answer), self._timeout_s)
        except TimeoutError:
            return await self._failed(action, device_id, "timeout", texts.broker_silent(self._timeout_s))
        finally:
            self._waiting.pop(sent.correlation, None)
        errors = answer_errors(sent.commands, responses)
        if errors:
            return await self._failed(action, device_id, "refused", texts.broker_refused(errors))
        return True

    async def apply(
        self, commands: Sequence[dict[str, Any]], *, action: BrokerAction, device_id: str
    ) -> bool:
        """:meth:`send` then :meth:`confirm`."""
        return await self.confirm(self.send(commands), action=action, device_id=device_id)

    async def _failed(self, action: BrokerAction, device_id: str, reason: str, detail: str) -> bool:
        self._metrics.broker_command_failures.labels(action, reason).inc()
        await self.alarm(device_id, texts.broker_command_failed(action, device_id, detail), ALARM_LABEL)
        return False

    async def alarm(self, device_id: str, reason: str, label: str) -> None:
        """An operator alarm about ``device_id``: counted, logged, stored, pushed to the consoles."""
        self._metrics.operator_alarms.labels(label).inc()
        log.error(broker_logs.OPERATOR_ALARM, reason)
        try:
            await self._store.add_operator_event("alarm", reason, device_id=device_id)
        except Exception:
            log.exception(broker_logs.OPERATOR_ALARM_NOT_STORED, reason)
        self._bus.publish("operator_alarm", alert_id=None, device_id=device_id, reason=reason)
