"""Versioned payload schema (protocol version 1).

All models are frozen and reject unknown fields: a message either matches the
schema exactly or is refused. Times are integer milliseconds since the Unix
epoch (UTC) so that the canonical bytes never depend on float formatting of
timestamps. See ``docs/protocol.md`` for the prose version.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1
MAX_PAYLOAD_BYTES = 4096

Id = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]
EpochMs = Annotated[int, Field(ge=0, lt=2**53)]
Seq = Annotated[int, Field(ge=0, lt=2**53)]
Signature = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Gesture = Literal["hold", "multi_press", "keyboard"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Location(_Frozen):
    """A position fix carried by the device (bracelet GNSS or paired phone)."""

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    accuracy_m: Annotated[float, Field(ge=0, le=100_000)]
    fix_ts: EpochMs
    source: Literal["gnss", "phone"]


class _Uplink(_Frozen):
    v: Literal[1]
    id: Id
    device: Id
    seq: Seq
    ts: EpochMs
    location: Location | None = None
    sig: Signature


class Alert(_Uplink):
    """The panic alert itself."""

    type: Literal["alert"]
    gesture: Gesture


class TestAlert(_Uplink):
    """Exercises the whole chain without reaching any responder."""

    __test__ = False  # not a pytest test class
    type: Literal["test"]
    gesture: Gesture


class Cancel(_Uplink):
    """Cancels ``alert_id``. A duress PIN is indistinguishable on the wire."""

    type: Literal["cancel"]
    alert_id: Id
    pin: Annotated[str, Field(pattern=r"^[0-9]{4,8}$")]


class Heartbeat(_Uplink):
    """Periodic health report."""

    type: Literal["heartbeat"]
    battery_pct: Annotated[int, Field(ge=0, le=100)] | None = None
    signal_dbm: Annotated[int, Field(ge=-150, le=0)] | None = None
    firmware: Annotated[str, Field(min_length=1, max_length=40)]
    uptime_s: Annotated[int, Field(ge=0)]


class Position(_Uplink):
    """Where she is now, while ``alert_id`` is open: sent every few seconds when the device has a fix.

    The fix is required (no fix, no message); its ``fix_ts`` is when the receiver
    computed it, ``ts`` when the message was signed.
    """

    type: Literal["position"]
    alert_id: Id
    location: Location


Uplink = Annotated[Alert | TestAlert | Cancel | Heartbeat | Position, Field(discriminator="type")]
UPLINK_ADAPTER: TypeAdapter[Alert | TestAlert | Cancel | Heartbeat | Position] = TypeAdapter(Uplink)

#: ``resolved`` and ``cancelled`` both close the alert on the device (one "closed" feeling);
#: ``cancel_refused`` (a wrong PIN, or PIN guessing rate-limited) keeps it open.
DownlinkType = Literal["received", "acknowledged", "resolved", "cancelled", "cancel_refused"]


class Downlink(_Frozen):
    """Feedback to one device about one of its alerts (``ref``)."""

    v: Literal[1]
    type: DownlinkType
    id: Id
    device: Id
    ref: Id
    ts: EpochMs
    sig: Signature


class Status(_Frozen):
    """Retained presence message; ``offline`` is the device's Last Will.

    Unsigned on purpose: a Last Will is composed at connect time and published
    by the broker later, so it cannot carry a fresh signature. The broker ACL
    (a device may only write its own status topic) is what authenticates it,
    and the dispatcher treats it as a hint; heartbeats carry the evidence.
    """

    v: Literal[1]
    state: Literal["online", "offline"]
    device: Id
