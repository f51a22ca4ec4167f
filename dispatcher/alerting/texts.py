"""French texts sent to responders and practitioners (SMS bodies and voice TwiML).

Pure functions of an :class:`~dispatcher.domain.AlertContext`: no I/O, no
clock (times come from the context). SMS bodies are rewritten to GSM-7 so a
typical alert stays within three segments; the voice script keeps proper
French (the text-to-speech engine reads accents) and spells codes digit by
digit so that they are understood on a bad line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from dispatcher.alerting.gsm7 import segments, to_gsm7
from dispatcher.alerting.replycodes import reply_code
from dispatcher.directory.location import offset_from_address
from dispatcher.domain import Address, AlertContext, AlertKind, LocationSource, ResolvedLocation

PARIS = "Europe/Paris"
DEFAULT_VOICE = "Polly.Lea"  # a French neural voice Twilio offers for fr-FR
VOICE_LANGUAGE = "fr-FR"
VOICE_REPEATS = 3
MAX_SEGMENTS = 3
ACK_LINE = "Repondez 1 {code} pour prendre en charge"  # {code}: the alert's reply code (replycodes.py)
#: The responder page's link (dispatcher/alerting/responder_links.py): live position, "Je prends en charge".
LINK_LINE = "Suivi en direct: {url}"
#: Offered in every call that asks to press 1: an SMS reply still works when a keypress cannot reach
#: the dispatcher (a restart); a bare "1" lands when it is the only alert waiting for this number,
#: otherwise the answer lists the codes (dispatcher/alerting/smsreplies.py).
SMS_FALLBACK_SPEECH = "Vous pouvez aussi répondre 1 par SMS au numéro qui vous appelle."
ACK_SPEECH = f"Appuyez sur 1 pour prendre en charge. {SMS_FALLBACK_SPEECH}"
NOTICE_REPEATS = 2  # an information call is said twice (no key to press)
#: Every message of a drill starts with this, voice included (SMS: GSM-7, "—" becomes "-").
DRILL_PREFIX = "EXERCICE — NE PAS INTERVENIR"
#: What every message decided after a duress cancel says (SMS, GSM-7 / voice).
DURESS_SMS = "DANGER CONFIRME (annulation sous contrainte)"
DURESS_SPEECH = "Annulation sous contrainte : le danger est confirmé."
#: The same, written on the responder page (dispatcher/web/responder), for a duress cancel / a duress reply.
DURESS_PAGE = "DANGER CONFIRMÉ (annulation sous contrainte)"
DURESS_REPLY_PAGE = "DANGER CONFIRMÉ (réponse sous contrainte)"
# Dropped in this order when an alert would not fit in MAX_SEGMENTS ("source": the words saying a
# declared address is one, never a fix's age or staleness).
OPTIONAL_DETAILS = ("details", "convention", "profession", "source")
# Last, and only when the SMS carries the responder page's link (which shows the position and
# opens it in a map): the Google Maps link.
LINKED_OPTIONAL = ("map",)
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
    if loc.at_address:  # a fix at the active visit: its floor and door code apply
        return _Place(loc.address, None)
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
    if loc.other_place:  # the fix and the declared visit disagree: both, and which is newer
        lines.append(loc.other_place)
    link = maps_link(loc)
    if link is not None and "map" in omit:  # the responder page the SMS links to shows it
        return lines
    words = [f"+/-{round(loc.accuracy_m)} m"] if loc.accuracy_m is not None else []
    if "source" not in omit or loc.fix_age_s is not None or loc.stale:  # a fix's age is never dropped
        words.append(_source_words(loc))
    source = f"({', '.join(words)})" if words else ""
    lines.append(f"{link} {source}".strip() if link else f"Pas de coordonnees {source}".strip())
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


def _fitted(header: str, ctx: AlertContext, ack: str, link: str | None = None) -> str:
    """The full responder message, dropping nice-to-have details until it fits.

    Never dropped: who, phone, RPPS, address, floor, door code, time, how to
    acknowledge, the responder page's link, and the GPS link unless that
    page's link stands in for it.
    """
    omit: frozenset[str] = frozenset()
    follow = LINK_LINE.format(url=link) if link else ""
    for drop in (None, *OPTIONAL_DETAILS, *(LINKED_OPTIONAL if link else ())):
        if drop is not None:
            omit = omit | {drop}
        who = _who(ctx, omit)
        where = _where_lines(ctx, omit)
        text = _sms([header, _fallback_line(ctx), who, *where, _when(ctx, omit), ack, follow])
        if segments(text) <= MAX_SEGMENTS:
            break
    return text


@dataclass(frozen=True, slots=True)
class Facts:
    """What a message must say beyond the alert itself, decided with the notification.

    ``tier``/``round``: the escalation position (a next tier and a repeat say
    so). ``duress``: decided after a duress cancel — the danger is confirmed.
    ``actor``: who acknowledged or closed it (None for the practitioner's own
    cancel). ``link``: this contact's responder page (SMS that ask to act).
    """

    purpose: str = "alert"
    tier: int = 0
    round: int = 0
    duress: bool = False
    actor: str | None = None
    link: str | None = None


def duress_words(reply: bool) -> str:
    """The duress as the responder page writes it: what the contact's SMS says, with its accents."""
    return DURESS_REPLY_PAGE if reply else DURESS_PAGE


def _drill(ctx: AlertContext, text: str, *, sms: bool) -> str:
    """Every message of a drill starts with the drill warning, voice included."""
    if ctx.kind is not AlertKind.DRILL:
        return text
    return f"{DRILL_PREFIX}\n{text}" if sms else f"{DRILL_PREFIX}. {text}"


def _alert_header(ctx: AlertContext, facts: Facts) -> str:
    if ctx.reason:  # raised by the dispatcher itself (visit timer): say why, in every alert SMS
        state = (
            "DANGER CONFIRME (reponse sous contrainte)"
            if facts.duress or ctx.duress
            else "praticien sans reponse"
        )
        return f"ALERTE VIGIE - {ctx.reason}, {state}"
    if facts.duress or ctx.duress:
        return f"ALERTE VIGIE - {DURESS_SMS}"
    if facts.round > 0:
        return f"ALERTE VIGIE - RELANCE {facts.round}: praticien en danger, toujours sans prise en charge"
    if facts.tier > 0:
        return "ALERTE VIGIE - praticien en danger, sans reponse des premiers contacts"
    return "ALERTE VIGIE - praticien en danger"


def ack_line(ctx: AlertContext) -> str:
    """How to acknowledge this alert by SMS: the reply names it ("Repondez 1 K42 ...")."""
    return ACK_LINE.format(code=reply_code(ctx.alert_id))


def alert_sms(ctx: AlertContext, facts: Facts | None = None) -> str:
    """SMS to a responder: who, where, when, and how to acknowledge (≤ 3 segments if possible)."""
    facts = facts or Facts()
    if ctx.kind is AlertKind.TEST:
        header = "TEST - aucune action requise. Essai VIGIE"
        ack = f"Test: repondez 1 {reply_code(ctx.alert_id)} pour verifier la chaine"
    else:
        header, ack = _drill(ctx, _alert_header(ctx, facts), sms=True), ack_line(ctx)
    return _fitted(header, ctx, ack, facts.link)


def duress_notice_sms(ctx: AlertContext, facts: Facts | None = None) -> str:
    """SMS to responders when the alert was cancelled with the duress PIN.

    The practitioner appears to cancel in front of her aggressor; responders
    must understand the opposite: the danger is confirmed.
    """
    header = f"VIGIE - {DURESS_SMS}: ignorez l'annulation"
    return _fitted(_drill(ctx, header, sms=True), ctx, ack_line(ctx), facts.link if facts else None)


def _about(ctx: AlertContext) -> str:
    reason = f", {ctx.reason}" if ctx.reason else ""
    return f"alerte de {_short_who(ctx)} ({local_time(ctx.received_at)}{reason})"


def _closing_sms(ctx: AlertContext, header: str, what: str, last: str) -> str:
    """Stand-downs and closings: what happened, which alert, what to do — no acknowledgement line."""
    alert = _about(ctx)
    return _sms([_drill(ctx, header, sms=True), f"{alert[0].upper()}{alert[1:]} {what}.", last])


def cancelled_sms(ctx: AlertContext, facts: Facts | None = None) -> str:
    """Stand-down: the practitioner cancelled with her own PIN."""
    what = "annulee par le praticien avec son code personnel"
    return _closing_sms(ctx, "VIGIE - FIN D'ALERTE", what, "Aucune intervention requise.")


def false_alarm_sms(ctx: AlertContext, facts: Facts | None = None) -> str:
    """Stand-down: an operator declared a false alarm (rows without an actor: the practitioner)."""
    actor = facts.actor if facts else None
    if actor is None:
        return cancelled_sms(ctx, facts)
    what = f"declaree fausse alerte par {actor}"
    return _closing_sms(ctx, "VIGIE - FIN D'ALERTE - fausse alerte", what, "Aucune intervention requise.")


def resolved_sms(ctx: AlertContext, facts: Facts | None = None) -> str:
    """The incident is closed (by an operator or the responder who took it)."""
    facts = facts or Facts()
    header = f"VIGIE - INCIDENT CLOS - {DURESS_SMS}" if facts.duress else "VIGIE - INCIDENT CLOS"
    return _closing_sms(ctx, header, f"close par {facts.actor or 'un operateur'}", "Merci.")


def ack_notice_sms(ctx: AlertContext, facts: Facts) -> str:
    """SMS to the other notified contacts: someone took the alert."""
    duress = f" {DURESS_SMS}." if facts.duress else ""
    by = facts.actor or "un operateur"
    return _sms([_drill(ctx, f"VIGIE: {_about(ctx)} prise en charge par {by}.{duress}", sms=True)])


def test_sms(ctx: AlertContext, facts: Facts | None = None) -> str:
    """SMS to the practitioner herself after she tested her device."""
    device = ctx.device.label or ctx.device.id
    return _sms(
        [
            f"VIGIE TEST - aucune action requise. Votre bouton '{device}' fonctionne.",
            f"Test recu a {local_time(ctx.received_at)}, {_source_words(ctx.location)}:",
            *_where_lines(ctx)[:1],
        ]
    )


def visit_check_sms(deadline: datetime) -> str:
    """The discreet check sent to her when a declared visit passes its expected end.

    Nothing in it says "alert" or "danger": someone reading over her shoulder
    sees a routine reminder. OK closes the visit; her duress code looks the same.
    """
    return to_gsm7(
        f"Vigie : tout va bien ? Repondez OK pour cloturer votre visite avant {local_time(deadline)},"
        " ou prolongez-la dans l'application."
    )


def quarantine_started(device_id: str, until: datetime) -> str:
    """Operator alarm: a flooding device was cut off at the broker (dispatcher/fleet/quarantine.py).

    It says the cost plainly: while cut off, the device cannot alert.
    """
    return (
        f"balise {device_id} coupée du broker jusqu'à {local_time(until)} : elle envoyait des centaines"
        " de messages refusés par seconde (inondation) et ne peut pas alerter pendant ce temps ; vérifiez-la"
    )


def quarantine_ended(device_id: str) -> str:
    """Operator alarm: a quarantined device was let back in."""
    return f"balise {device_id} rétablie sur le broker après sa quarantaine : elle peut de nouveau alerter"


# What a dynamic-security batch was for, and what its failure means for the device.
_BROKER_ACTIONS = {
    "cut": (
        "la coupure de la balise {d} (inondation)",
        "elle n'est peut-être pas coupée ; le dispatcher continue de refuser ses messages ;"
        " vérifiez le broker",
    ),
    "release": (
        "le rétablissement de la balise {d} après sa quarantaine",
        "elle ne peut peut-être toujours pas alerter ; rétablissez-la avec le compte"
        " d'administration du broker",
    ),
    "revoke": (
        "la désactivation au broker de la balise révoquée {d}",
        "elle peut peut-être encore s'y connecter (ses messages restent refusés par le dispatcher) ;"
        " lancez vigie provision revoke --broker-admin-port",
    ),
}


def broker_command_failed(action: str, device_id: str, detail: str) -> str:
    """Operator alarm: the broker refused or did not answer a dynamic-security batch (broker_control.py)."""
    what, meaning = _BROKER_ACTIONS[action]
    return f"le broker n'a pas confirmé {what.format(d=device_id)} ({detail}) : {meaning}"


REVOKE_UNCONFIRMED = (
    "balise révoquée : ses messages sont refusés, mais le broker n'a pas confirmé sa désactivation"
    " (alarme opérateur levée) ; lancez vigie provision revoke --broker-admin-port"
)


def broker_refused(errors: list[str]) -> str:
    return "refus : " + " ; ".join(errors)


def broker_silent(timeout_s: float) -> str:
    return f"pas de réponse en {timeout_s:g} s"


def broker_unsent() -> str:
    return "aucune session MQTT pour l'envoyer"


def _spell(code: str) -> str:
    """'4512B' -> '4, 5, 1, 2, B': read slowly, one symbol at a time."""
    return ", ".join(c for c in code if not c.isspace())


def _spoken_who(ctx: AlertContext) -> str:
    p = ctx.practitioner
    return f"du docteur {p.first_name} {p.last_name}" if p is not None else f"de {_short_who(ctx)}"


def _spoken_time(ctx: AlertContext) -> str:
    return local_time(ctx.received_at).replace(":", " heures ")


def _spoken_place(ctx: AlertContext) -> list[str]:
    loc = ctx.location
    place = _place(ctx)
    address = place.address
    parts: list[str] = []
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
    if loc.other_place:
        parts.append(loc.other_place)
    if loc.stale:
        parts.append("Attention, position ancienne.")
    return parts


def _spoken_header(ctx: AlertContext, facts: Facts) -> list[str]:
    if ctx.kind is AlertKind.TEST:
        return ["Ceci est un test Vigie, aucune action requise."]
    parts = ["Alerte Vigie."]
    if ctx.reason:
        parts.append(f"Motif : {ctx.reason}, sans réponse de sa part.")
    if facts.duress or ctx.duress:
        parts.append(DURESS_SPEECH)
    elif facts.round > 0:
        parts.append(f"Relance numéro {facts.round} : personne n'a encore pris l'alerte en charge.")
    elif facts.tier > 0:
        parts.append("Les premiers contacts n'ont pas répondu.")
    return parts


def alert_speech(ctx: AlertContext, facts: Facts | None = None) -> str:
    """The French sentence spoken to a responder who answers the alert call."""
    parts = _spoken_header(ctx, facts or Facts())
    if ctx.practitioner is not None:
        p = ctx.practitioner
        parts.append(f"Le docteur {p.first_name} {p.last_name}, {p.profession}, demande une aide urgente.")
    else:
        parts.append(f"Le bouton d'alerte de {_short_who(ctx)} a été déclenché.")
    if ctx.routing_reason:
        parts.append(f"Alerte transmise en secours : {ctx.routing_reason}.")
    parts += _spoken_place(ctx)
    parts.append(f"Alerte reçue à {_spoken_time(ctx)}.")
    parts.append(ACK_SPEECH)
    return _drill(ctx, " ".join(parts), sms=False)


def duress_notice_speech(ctx: AlertContext, facts: Facts | None = None) -> str:
    """The call to a voice-only contact after a duress cancel: an alert, not a stand-down."""
    parts = ["Alerte Vigie.", DURESS_SPEECH, "Ignorez toute annulation et poursuivez l'intervention."]
    parts.append(f"Alerte {_spoken_who(ctx)}, reçue à {_spoken_time(ctx)}.")
    parts += _spoken_place(ctx)
    parts.append(ACK_SPEECH)
    return _drill(ctx, " ".join(parts), sms=False)


def _stand_down_speech(ctx: AlertContext, what: str) -> str:
    text = (
        f"Message Vigie, fin d'alerte. L'alerte {_spoken_who(ctx)}, reçue à {_spoken_time(ctx)}, {what}. "
        "Aucune intervention n'est requise. Il est inutile de rappeler."
    )
    return _drill(ctx, text, sms=False)


def cancelled_speech(ctx: AlertContext, facts: Facts | None = None) -> str:
    """Stand-down call: the practitioner cancelled with her own code."""
    return _stand_down_speech(ctx, "a été annulée par le praticien avec son code personnel")


def false_alarm_speech(ctx: AlertContext, facts: Facts | None = None) -> str:
    """Stand-down call: an operator declared a false alarm."""
    actor = facts.actor if facts else None
    if actor is None:
        return cancelled_speech(ctx, facts)
    return _stand_down_speech(ctx, f"est une fausse alerte, déclarée par {actor}")


def _information_speech(ctx: AlertContext, facts: Facts | None, subject: str, what: str) -> str:
    """'Message Vigie. [danger confirmé.] L'<subject> du docteur X, ... <what> par <actor>.'"""
    facts = facts or Facts()
    duress = f" {DURESS_SPEECH}" if facts.duress else ""
    text = f"Message Vigie.{duress} {subject} {_spoken_who(ctx)}, {what} par {facts.actor or 'un opérateur'}."
    return _drill(ctx, text, sms=False)


def resolved_speech(ctx: AlertContext, facts: Facts | None = None) -> str:
    """Closing call: the incident is over."""
    when = f"alerte reçue à {_spoken_time(ctx)}, a été clos"
    return _information_speech(ctx, facts, "L'incident", when) + " Merci."


def ack_notice_speech(ctx: AlertContext, facts: Facts | None = None) -> str:
    """Information call: someone took the alert (only SMS contacts get it today)."""
    return _information_speech(ctx, facts, "L'alerte", f"reçue à {_spoken_time(ctx)}, a été prise en charge")


def test_speech(ctx: AlertContext, facts: Facts | None = None) -> str:
    """Never called today (a test texts the practitioner only); here so that every row has a voice."""
    return f"Test Vigie, aucune action requise. Votre bouton {ctx.device.label or ctx.device.id} fonctionne."


NO_KEY_SPEECH = "Aucune touche reçue. L'alerte reste active et sera transmise à un autre contact."
#: Said when the first gather ended without a key: the caller is asked once more.
ASK_AGAIN_SPEECH = (
    f"Aucune touche reçue. Appuyez sur 1 pour prendre en charge l'alerte. {SMS_FALLBACK_SPEECH}"
)
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# What ElementTree escapes in attribute values, on top of &, < and >.
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#09;"}


def alert_twiml(
    ctx: AlertContext, gather_action_url: str, *, voice: str = DEFAULT_VOICE, facts: Facts | None = None
) -> str:
    """TwiML of the alert call: the message repeated inside a one-digit ``<Gather>``.

    The responder can press 1 at any moment while the message plays; if
    nothing is pressed after the repeats, ``<Redirect>`` posts to the same
    action without digits and the dispatcher asks once more
    (``webhooks._gather_answer``), then says the alert stays open (the
    escalation engine moves on by itself).

    A string template, not ``twilio.twiml``'s ElementTree builder: it is
    rendered for every call an alert places, where the builder cost about
    0.5 ms of the event loop each. The tests hold it to the builder's output
    byte for byte.
    """
    return _gather_twiml(alert_speech(ctx, facts), gather_action_url, voice)


def _gather_twiml(speech: str, gather_action_url: str, voice: str) -> str:
    spoken = _say_element(speech, voice) + '<Pause length="1" />'
    return (
        f"{_XML_DECLARATION}<Response>"
        f'<Gather action="{_attribute(gather_action_url)}" method="POST" numDigits="1" timeout="5">'
        f"{spoken * VOICE_REPEATS}</Gather>{_redirect_element(gather_action_url)}</Response>"
    )


def _notice_twiml(speech: str, voice: str) -> str:
    """A call that only informs: said twice, no ``<Gather>`` — nothing to press."""
    spoken = _say_element(speech, voice) + '<Pause length="1" />'
    return f"{_XML_DECLARATION}<Response>{spoken * NOTICE_REPEATS}</Response>"


# ---------------------------------------------------------------------------
# The audience table: what each audience hears, for every event (docs/lifecycle.md)


@dataclass(frozen=True, slots=True)
class Message:
    """One row: the SMS, the spoken script, and whether the call asks to press 1."""

    audience: str
    sms: Callable[[AlertContext, Facts], str]
    speech: Callable[[AlertContext, Facts], str]
    gather: bool


#: purpose of a notification → what is said. "alert" covers the first tier, the
#: next tiers and the repeats (the header says which, from ``Facts``); a drill
#: is any row of an alert of kind ``drill`` (every text starts with DRILL_PREFIX).
MESSAGES: dict[str, Message] = {
    "alert": Message("responders of the current tier", alert_sms, alert_speech, gather=True),
    "duress_notice": Message(
        "responders already alerted", duress_notice_sms, duress_notice_speech, gather=True
    ),
    "ack_notice": Message("the other responders alerted", ack_notice_sms, ack_notice_speech, gather=False),
    "cancelled": Message("responders already alerted", cancelled_sms, cancelled_speech, gather=False),
    "false_alarm": Message("responders already alerted", false_alarm_sms, false_alarm_speech, gather=False),
    "resolved": Message("responders already alerted", resolved_sms, resolved_speech, gather=False),
    "test": Message("the practitioner", test_sms, test_speech, gather=False),
}


def sms_for(ctx: AlertContext, facts: Facts) -> str:
    """The SMS body of a notification."""
    return MESSAGES[facts.purpose].sms(ctx, facts)


def twiml_for(ctx: AlertContext, facts: Facts, gather_action_url: str, *, voice: str = DEFAULT_VOICE) -> str:
    """The TwiML of a call: a ``<Gather>`` only for what asks to press 1 (never a stand-down)."""
    message = MESSAGES[facts.purpose]
    speech = message.speech(ctx, facts)
    return _gather_twiml(speech, gather_action_url, voice) if message.gather else _notice_twiml(speech, voice)


def _redirect_element(url: str) -> str:
    # Exactly what the builder writes, empty element included.
    return f'<Redirect method="POST">{escape(url)}</Redirect>' if url else '<Redirect method="POST" />'


def _say_element(text: str, voice: str) -> str:
    return f'<Say language="{_attribute(VOICE_LANGUAGE)}" voice="{_attribute(voice)}">{escape(text)}</Say>'


def _attribute(value: str) -> str:
    return escape(value, _ATTRIBUTE_ENTITIES)


# -- visits of a practitioner without a device able to carry their alert (dispatcher/visits/runner.py) --

#: What she is told when she declares a visit without any registered device (her page, the API).
VISIT_WITHOUT_DEVICE_WARNING = (
    "Aucune balise enregistrée à votre nom : si vous ne répondez pas à la vérification de fin de"
    " visite, seuls les opérateurs de Vigie seront alertés (ni police ni gendarmerie). Faites"
    " enregistrer une balise."
)


def visit_alert_not_raised_sms(
    reason: str, name: str, phone: str | None, address: Address | None, *, duress: bool
) -> str:
    """SMS to the deployment's 24/7 fallback contact: a visit's alert could not be raised.

    Nobody else outside the operators' consoles is told, and a console may be
    unattended: this contact is the human who can act. The address is the
    visit's (as in any alert's message); under duress, no call to her.
    """
    where = "adresse inconnue"
    if address is not None:
        code = f"code {address.access_code}" if address.access_code else None
        extras = [x for x in (address.floor, code) if x]
        where = address.label + (f" ({', '.join(extras)})" if extras else "")
    act = (
        "réponse SOUS CONTRAINTE : ne l'appelez PAS, prévenez la police"
        if duress
        else f"appelez-la{f' au {phone}' if phone else ''} et prévenez la police"
    )
    return to_gsm7(
        f"ALERTE VIGIE NON TRANSMISE - {reason}, praticien sans balise : {name}."
        f" Lieu: {where}. La police n'a PAS été prévenue : {act}."
    )


#: Asked to mark handled an event that is not such an alarm (API 409).
EVENT_NOT_TO_HANDLE = "cet événement n'est pas une alarme à prendre en charge"


def alarm_already_handled(by: str | None) -> str:
    """API 409: another operator took the alarm in hand first."""
    return f"alarme déjà prise en charge par {by or 'un autre opérateur'}"


def visit_alert_not_raised(
    reason: str,
    practitioner_id: str,
    *,
    name: str | None = None,
    phone: str | None = None,
    duress: bool = False,
) -> str:
    """Operator alarm: a visit's alert could not be raised (she has no device at all).

    Under duress, whoever holds her phone must not learn that her answer was
    read as one: the operators are told not to call her.
    """
    who = f"{name} ({practitioner_id})" if name else practitioner_id
    if duress:
        act = "elle a répondu SOUS CONTRAINTE : ne l'appelez PAS, appelez la police"
    else:
        act = f"appelez-la{f' au {phone}' if phone else ''} et appelez la police"
    return (
        f"{reason} — {who} : ALERTE NON DÉCLENCHÉE, aucune balise à son nom ;"
        f" la police n'a PAS été prévenue : {act} (adresse dans « Visites en cours »)"
    )
