"""French texts sent to responders and practitioners (SMS bodies and voice TwiML).

Pure functions of an :class:`~dispatcher.domain.AlertContext`: no I/O, no
clock (times come from the context). SMS bodies are rewritten to GSM-7 so a
typical alert stays within three segments; the voice script keeps proper
French (the text-to-speech engine reads accents) and spells codes digit by
digit so that they are understood on a bad line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from dispatcher.domain import Address, AlertContext, AlertKind, LocationSource, ResolvedLocation
from dispatcher.gsm7 import segments, to_gsm7
from dispatcher.location import offset_from_address

PARIS = "Europe/Paris"
DEFAULT_VOICE = "Polly.Lea"  # a French neural voice Twilio offers for fr-FR
VOICE_LANGUAGE = "fr-FR"
VOICE_REPEATS = 3
MAX_SEGMENTS = 3
ACK_LINE = "Repondez 1 pour prendre en charge"
# Dropped in this order when an alert would not fit in MAX_SEGMENTS.
OPTIONAL_DETAILS = ("details", "convention", "profession")
AT_ADDRESS_M = 30.0  # a fix this close to a known address is "at" it (floor and door code apply)

_SOURCE_WORDS: dict[LocationSource, str] = {
    LocationSource.GPS: "position GPS",
    LocationSource.HOME_VISIT: "visite à domicile déclarée",
    LocationSource.SITE: "lieu d'exercice",
    LocationSource.LAST_KNOWN: "dernière position connue",
    LocationSource.UNKNOWN: "position inconnue",
}


def local_time(moment: datetime) -> str:
    """``HH:MM`` in Europe/Paris (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment.astimezone(ZoneInfo(PARIS)).strftime("%H:%M")


def age_words(seconds: float) -> str:
    """'il y a 40 s', 'il y a 3 min', 'il y a 2 h 05'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"il y a {s} s"
    if s < 3600:
        return f"il y a {s // 60} min"
    return f"il y a {s // 3600} h {(s % 3600) // 60:02d}"


def maps_link(loc: ResolvedLocation) -> str | None:
    """Google Maps link of the best coordinates (fix, else the geocoded address)."""
    point = loc.point or (loc.address.point if loc.address else None)
    if point is None:
        return None
    return f"https://maps.google.com/?q={point.lat:.5f},{point.lon:.5f}"


def _who(ctx: AlertContext, omit: frozenset[str] = frozenset()) -> str:
    p = ctx.practitioner
    if p is None:
        return f"Bouton d'alerte de {_short_who(ctx)}"
    profession = "" if "profession" in omit else f" ({p.profession})"
    return f"{p.display_name}{profession}, tel {p.phones[0]}, RPPS {p.rpps}"


def _short_who(ctx: AlertContext) -> str:
    if ctx.practitioner is not None:
        return ctx.practitioner.display_name
    return ctx.site.name if ctx.site else ctx.device.label or ctx.device.id


def _source_words(loc: ResolvedLocation) -> str:
    words = _SOURCE_WORDS[loc.source]
    if loc.fix_age_s is not None:
        words += f" {age_words(loc.fix_age_s)}"
    if loc.stale:
        words = f"ANCIENNE {words}"
    return words


@dataclass(frozen=True)
class _Place:
    """Where to send people, as texts need it."""

    address: Address | None  # the address she is at, or the known one she is near
    offset: str | None  # "a 40 m au nord-est de <address>"; None = at the address


def _place(ctx: AlertContext) -> _Place:
    loc = ctx.location
    if loc.source in (LocationSource.HOME_VISIT, LocationSource.SITE):
        return _Place(loc.address or (ctx.site.address if ctx.site else None), None)
    if loc.address is None or loc.point is None:
        return _Place(loc.address, None)
    radius = max(AT_ADDRESS_M, loc.accuracy_m or 0)
    return _Place(loc.address, offset_from_address(loc.point, loc.address, at_radius_m=radius))


def _where_lines(ctx: AlertContext, omit: frozenset[str] = frozenset()) -> list[str]:
    loc = ctx.location
    place = _place(ctx)
    address = place.address
    lines: list[str] = []
    if address is not None and place.offset is not None:
        lines.append(f"Lieu: {place.offset}")
    elif address is not None:
        parts = [address.label]
        if address.floor:
            parts.append(address.floor)
        if address.access_code:
            parts.append(f"code porte {address.access_code}")
        if address.details and "details" not in omit:
            parts.append(address.details)
        lines.append("Lieu: " + ", ".join(parts))
    elif loc.point is not None:
        lines.append("Lieu: aucune adresse connue a proximite")
    else:
        lines.append(f"Lieu: {loc.description}")
    link = maps_link(loc)
    precision = f"+/-{round(loc.accuracy_m)} m, " if loc.accuracy_m is not None else ""
    source = f"({precision}{_source_words(loc)})"
    lines.append(f"{link} {source}" if link else f"Pas de coordonnees {source}")
    return lines


def _when(ctx: AlertContext, omit: frozenset[str] = frozenset()) -> str:
    when = f"Alerte a {local_time(ctx.received_at)}"
    if ctx.convention_name and "convention" not in omit:
        when += f" - {ctx.convention_name}"
    return when


def _fallback_line(ctx: AlertContext) -> str:
    """Why this contact gets an alert routed through a fallback ('' when the competent unit does)."""
    return f"Routage de secours: {ctx.routing_reason}" if ctx.routing_reason else ""


def _sms(lines: list[str]) -> str:
    return to_gsm7("\n".join(line for line in lines if line))


def _fitted(header: str, ctx: AlertContext, ack: str) -> str:
    """The full responder message, dropping nice-to-have details until it fits.

    Never dropped: who, phone, RPPS, address, floor, door code, GPS link,
    time and how to acknowledge.
    """
    omit: frozenset[str] = frozenset()
    for drop in (None, *OPTIONAL_DETAILS):
        if drop is not None:
            omit = omit | {drop}
        who = _who(ctx, omit)
        text = _sms([header, _fallback_line(ctx), who, *_where_lines(ctx, omit), _when(ctx, omit), ack])
        if segments(text) <= MAX_SEGMENTS:
            break
    return text


def alert_sms(ctx: AlertContext) -> str:
    """SMS to a responder: who, where, when, and how to acknowledge (≤ 3 segments if possible)."""
    if ctx.kind is AlertKind.TEST:
        header, ack = "TEST - aucune action requise. Essai VIGIE", "Test: repondez 1 pour verifier la chaine"
    elif ctx.duress:
        header, ack = "ALERTE VIGIE - ANNULATION SOUS CONTRAINTE, danger maintenu", ACK_LINE
    else:
        header, ack = "ALERTE VIGIE - praticien en danger", ACK_LINE
    return _fitted(header, ctx, ack)


def duress_notice_sms(ctx: AlertContext) -> str:
    """SMS to responders when the alert was cancelled with the duress PIN.

    The practitioner appears to cancel in front of her aggressor; responders
    must understand the opposite: the danger is confirmed.
    """
    return _fitted("VIGIE - ANNULATION SOUS CONTRAINTE: ignorez l'annulation, danger confirme", ctx, ACK_LINE)


def false_alarm_sms(ctx: AlertContext) -> str:
    """SMS to responders already notified: the practitioner cancelled (normal PIN)."""
    return _sms(
        [
            f"VIGIE: fausse alerte, annulee par le praticien ({_short_who(ctx)}, alerte de "
            f"{local_time(ctx.received_at)})",
            "Aucune intervention requise.",
        ]
    )


def ack_notice_sms(ctx: AlertContext, acked_by: str) -> str:
    """SMS to the other notified contacts: someone took the alert."""
    when = local_time(ctx.received_at)
    return _sms([f"VIGIE: alerte {_short_who(ctx)} ({when}) prise en charge par {acked_by}."])


def test_sms(ctx: AlertContext) -> str:
    """SMS to the practitioner herself after she tested her device."""
    device = ctx.device.label or ctx.device.id
    return _sms(
        [
            f"VIGIE TEST - aucune action requise. Votre bouton '{device}' fonctionne.",
            f"Test recu a {local_time(ctx.received_at)}, {_source_words(ctx.location)}:",
            *_where_lines(ctx)[:1],
        ]
    )


def _spell(code: str) -> str:
    """'4512B' -> '4, 5, 1, 2, B': read slowly, one symbol at a time."""
    return ", ".join(c for c in code if not c.isspace())


def alert_speech(ctx: AlertContext) -> str:
    """The French sentence spoken to a responder who answers the call."""
    loc = ctx.location
    test = ctx.kind is AlertKind.TEST
    parts = ["Ceci est un test Vigie, aucune action requise." if test else "Alerte Vigie."]
    if ctx.duress:
        parts.append("Annulation sous contrainte : le danger est confirmé.")
    if ctx.practitioner is not None:
        p = ctx.practitioner
        parts.append(f"Le docteur {p.first_name} {p.last_name}, {p.profession}, demande une aide urgente.")
    else:
        parts.append(f"Le bouton d'alerte de {_short_who(ctx)} a été déclenché.")
    if ctx.routing_reason:
        parts.append(f"Alerte transmise en secours : {ctx.routing_reason}.")
    place = _place(ctx)
    address = place.address
    if address is not None and place.offset is not None:
        parts.append(f"Position GPS {place.offset}.")
    elif address is not None:
        parts.append(f"Adresse : {address.label}.")
        if address.floor:
            parts.append(f"{address.floor}.")
        if address.access_code:
            parts.append(f"Code de la porte : {_spell(address.access_code)}.")
    else:
        parts.append(f"Position : {loc.description}")
    if loc.stale:
        parts.append("Attention, position ancienne.")
    parts.append(f"Alerte reçue à {local_time(ctx.received_at).replace(':', ' heures ')}.")
    parts.append("Appuyez sur 1 pour prendre en charge.")
    return " ".join(parts)


NO_KEY_SPEECH = "Aucune touche reçue. L'alerte reste active et sera transmise à un autre contact."
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# What ElementTree escapes in attribute values, on top of &, < and >.
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#09;"}


def alert_twiml(ctx: AlertContext, gather_action_url: str, *, voice: str = DEFAULT_VOICE) -> str:
    """TwiML of the alert call: the message repeated inside a one-digit ``<Gather>``.

    The responder can press 1 at any moment while the message plays; if
    nothing is pressed after the repeats, a last sentence says the alert stays
    open (the escalation engine moves on by itself).

    A string template, not ``twilio.twiml``'s ElementTree builder: it is
    rendered for every call an alert places, where the builder cost about
    0.5 ms of the event loop each. The tests hold it to the builder's output
    byte for byte.
    """
    spoken = _say_element(alert_speech(ctx), voice) + '<Pause length="1" />'
    return (
        f"{_XML_DECLARATION}<Response>"
        f'<Gather action="{_attribute(gather_action_url)}" method="POST" numDigits="1" timeout="5">'
        f"{spoken * VOICE_REPEATS}</Gather>{_say_element(NO_KEY_SPEECH, voice)}</Response>"
    )


def _say_element(text: str, voice: str) -> str:
    return f'<Say language="{_attribute(VOICE_LANGUAGE)}" voice="{_attribute(voice)}">{escape(text)}</Say>'


def _attribute(value: str) -> str:
    return escape(value, _ATTRIBUTE_ENTITIES)
