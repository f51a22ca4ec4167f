"""MQTT topic tree shared by devices, the broker ACLs and the dispatcher.

Every topic lives under ``vigie/v1/dev/<device-id>/``::

    up/alert       device -> dispatcher   QoS 1, not retained
    up/test        device -> dispatcher   QoS 1, not retained
    up/cancel      device -> dispatcher   QoS 1, not retained
    up/heartbeat   device -> dispatcher   QoS 0, not retained
    up/position    device -> dispatcher   QoS 0, not retained (while an alert is open)
    status         device -> anyone       QoS 1, retained, Last Will "offline"
    down           dispatcher -> device   QoS 1, not retained

Ids are restricted to ``[a-z0-9-]`` so that they can never smuggle MQTT
wildcards (``+``, ``#``) or extra levels (``/``) into a topic or an ACL rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "vigie/v1/dev"
ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
DEFAULT_SHARE_GROUP = "dispatch"


class UplinkKind(StrEnum):
    """The signed messages a device sends, one topic leaf each."""

    ALERT = "alert"
    TEST = "test"
    CANCEL = "cancel"
    HEARTBEAT = "heartbeat"
    POSITION = "position"


@dataclass(frozen=True, slots=True)
class QoSPolicy:
    """How a message is published: MQTT QoS level and retain flag."""

    qos: int
    retain: bool


QOS: dict[str, QoSPolicy] = {
    UplinkKind.ALERT: QoSPolicy(qos=1, retain=False),
    UplinkKind.TEST: QoSPolicy(qos=1, retain=False),
    UplinkKind.CANCEL: QoSPolicy(qos=1, retain=False),
    # A lost heartbeat is replaced 30 s later; QoS 0 keeps 10,000 devices cheap.
    UplinkKind.HEARTBEAT: QoSPolicy(qos=0, retain=False),
    # The next position follows a few seconds later, and a backlog of old ones
    # replayed after a reconnection would only compete with her own alert and
    # cancel re-sends for the device's admission budget: QoS 0, never queued.
    UplinkKind.POSITION: QoSPolicy(qos=0, retain=False),
    "status": QoSPolicy(qos=1, retain=True),
    "down": QoSPolicy(qos=1, retain=False),
}


class TopicError(ValueError):
    """A topic or id that does not belong to the Vigie tree."""


def check_id(value: str, what: str = "identifiant") -> str:
    """Return ``value`` if it is a valid device/event id, else raise TopicError."""
    if not ID_RE.fullmatch(value):
        raise TopicError(
            f"{what} {value!r} invalide : 1 à 64 caractères a-z, 0-9 et -, sans - au début ni à la fin"
        )
    return value


def uplink_topic(device_id: str, kind: UplinkKind) -> str:
    """Topic a device publishes ``kind`` messages on."""
    return f"{ROOT}/{check_id(device_id, 'identifiant de balise')}/up/{kind.value}"


def status_topic(device_id: str) -> str:
    """Retained online/offline status topic (also the Last Will topic)."""
    return f"{ROOT}/{check_id(device_id, 'identifiant de balise')}/status"


def downlink_topic(device_id: str) -> str:
    """Topic the dispatcher publishes received/acknowledged/... feedback on."""
    return f"{ROOT}/{check_id(device_id, 'identifiant de balise')}/down"


def shared_uplink_filter(group: str = DEFAULT_SHARE_GROUP) -> str:
    """Shared-subscription filter so N dispatchers split the uplink load."""
    return f"$share/{check_id(group, 'groupe partagé')}/{ROOT}/+/up/+"


def shared_status_filter(group: str = DEFAULT_SHARE_GROUP) -> str:
    """Shared-subscription filter for device status / Last Will messages."""
    return f"$share/{check_id(group, 'groupe partagé')}/{ROOT}/+/status"


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """A topic split into its meaningful parts."""

    device_id: str
    channel: str  # "up", "status" or "down"
    kind: UplinkKind | None  # set for "up" topics only

    def __str__(self) -> str:
        # The topic itself, for log lines and rejection reasons (not a Python repr).
        leaf = f"/{self.kind.value}" if self.kind is not None else ""
        return f"{ROOT}/{self.device_id}/{self.channel}{leaf}"


def parse_topic(topic: str) -> ParsedTopic:
    """Split a concrete topic; raise TopicError for anything outside the tree."""
    prefix = ROOT + "/"
    if not topic.startswith(prefix):
        raise TopicError(f"sujet {topic!r} hors de {ROOT}/")
    parts = topic[len(prefix) :].split("/")
    device_id = check_id(parts[0], "identifiant de balise")
    if parts[1:] in (["status"], ["down"]):
        return ParsedTopic(device_id, parts[1], None)
    if len(parts) == 3 and parts[1] == "up":
        try:
            return ParsedTopic(device_id, "up", UplinkKind(parts[2]))
        except ValueError:
            pass
    raise TopicError(f"sujet {topic!r} : pas un sujet de balise Vigie")
