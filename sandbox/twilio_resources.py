"""Resources, errors and TwiML reading of the Twilio sandbox (no I/O here).

Shapes follow Twilio's 2010-04-01 REST API: SIDs are a two-letter prefix and
32 hex digits, dates are RFC 2822 in GMT, counters are strings, money is
``null`` until billed, errors are ``{code, message, more_info, status}``.
"""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urljoin

from dispatcher.alerting.gsm7 import segments

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
SMS_FINAL = frozenset({"delivered", "undelivered", "failed", "canceled"})
CALL_FINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
MAX_BODY = 1600

ERROR_MESSAGES: dict[int, str] = {
    20001: "Invalid request parameter",
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21201: "No 'To' number is specified",
    21205: "Url parameter is required (or Twiml)",
    21211: "Invalid 'To' Phone Number",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    21602: "Message body is required.",
    21603: "The 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30008: "Unknown error",
}


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: ``SM``/``CA``/... followed by 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime) -> str:
    """``Thu, 23 Apr 2020 03:47:38 +0000`` as in Twilio's JSON."""
    return format_datetime(moment.astimezone(UTC))


def now() -> datetime:
    return datetime.now(UTC)


def error_body(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    """Twilio's legacy error document (what the python library parses)."""
    return {
        "code": code,
        "message": message or ERROR_MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def http_status_for(code: int) -> int:
    """HTTP status Twilio answers a given error code with."""
    return {20003: 401, 20404: 404, 20429: 429, 20500: 500}.get(code, 400)


@dataclass
class NumberBehaviour:
    """How the simulated network treats one destination number."""

    sms_status: str = "delivered"  # final SMS status: delivered | undelivered | failed
    call_status: str = "completed"  # completed (answered) | no-answer | busy | failed
    error_code: int | None = None  # ErrorCode of a failed/undelivered status callback
    reject_code: int | None = None  # synchronous API error on create (21211, 21610, 20429...)
    http_500: bool = False  # the API always fails with a 500 for this number
    latency_ms: float | None = None  # overrides the global response latency
    # The message or call is created (its status callbacks start) this long before the API
    # answers: a slow network back to the sender, whose answer then comes after the callbacks.
    answer_late_ms: float | None = None
    ack_after_ms: float | None = None  # contact replies / presses automatically after this delay
    ack_text: str = "1"  # what the contact replies or presses

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NumberBehaviour:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Message:
    """An outbound SMS resource."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    status: str = "queued"
    date_created: datetime = field(default_factory=now)
    date_updated: datetime = field(default_factory=now)
    date_sent: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None

    @property
    def final(self) -> bool:
        return self.status in SMS_FINAL

    def set_status(self, status: str, error_code: int | None = None) -> None:
        self.status = status
        self.date_updated = now()
        if status == "sent":
            self.date_sent = self.date_updated
        if error_code is not None:
            self.error_code = error_code
            self.error_message = ERROR_MESSAGES.get(error_code)

    def to_json(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent) if self.date_sent else None,
            "date_updated": rfc2822(self.date_updated),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


@dataclass
class Call:
    """An outbound call resource, with what the simulated callee does."""

    sid: str
    account_sid: str
    to: str
    from_: str
    twiml: str | None
    url: str | None
    status_callback: str | None
    status_callback_events: frozenset[str]
    status: str = "queued"
    date_created: datetime = field(default_factory=now)
    date_updated: datetime = field(default_factory=now)
    start_time: datetime | None = None
    end_time: datetime | None = None
    gather_action: str | None = None
    sequence: int = 0

    @property
    def final(self) -> bool:
        return self.status in CALL_FINAL

    @property
    def duration(self) -> int | None:
        if self.start_time is None or self.end_time is None:
            return None
        return max(0, round((self.end_time - self.start_time).total_seconds()))

    def set_status(self, status: str) -> None:
        self.status = status
        self.date_updated = now()
        if status == "in-progress":
            self.start_time = self.date_updated
        elif status in CALL_FINAL:
            self.end_time = self.date_updated

    def to_json(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        subresources = ("notifications", "recordings", "payments", "events", "siprec", "streams")
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "direction": "outbound-api",
            "duration": str(self.duration) if self.duration is not None else None,
            "end_time": rfc2822(self.end_time) if self.end_time else None,
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": rfc2822(self.start_time) if self.start_time else None,
            "status": self.status,
            "subresource_uris": {name: f"{uri}/{name.capitalize()}.json" for name in subresources},
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": f"{uri}.json",
        }


def find_gather_action(twiml: str, document_url: str | None) -> str | None:
    """URL a keypress is posted to, as Twilio resolves it.

    ``<Gather action>`` may be relative to the TwiML document's URL; without
    an action Twilio posts back to the document itself. Inline TwiML has no
    document URL, so it needs an absolute action.
    """
    try:
        root = ET.fromstring(twiml.strip().encode())
    except ET.ParseError:
        return None
    gather = root.find(".//Gather")
    if gather is None:
        return None
    action = gather.get("action")
    if not action:
        return document_url
    return urljoin(document_url, action) if document_url else action


def said_texts(twiml: str) -> list[str]:
    """Texts of ``<Say>`` and ``<Message>`` verbs in a TwiML answer (for the record)."""
    try:
        root = ET.fromstring(twiml.strip().encode())
    except ET.ParseError:
        return []
    return [(el.text or "").strip() for el in root.iter() if el.tag in ("Say", "Message", "Body")]
