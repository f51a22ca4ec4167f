"""French SMS and voice texts composed from an AlertContext."""

from __future__ import annotations

import unicodedata
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from twilio.twiml.voice_response import VoiceResponse

from dispatcher.alerting import texts
from dispatcher.alerting.gsm7 import is_gsm7, segments
from dispatcher.alerting.texts import (
    ack_notice_sms,
    alert_sms,
    alert_twiml,
    duress_notice_sms,
    false_alarm_sms,
    local_time,
)
from dispatcher.domain import (
    Address,
    AlertContext,
    AlertKind,
    Device,
    DeviceKind,
    GeoPoint,
    LocationSource,
    Practitioner,
    ResolvedLocation,
    Site,
    SiteKind,
)

GATHER = "https://vigie.example.fr/webhooks/twilio/voice/gather?ref=a1"

# A long, realistic home-visit address, full of characters that force UCS-2.
ADDRESS = Address(
    label="Résidence « Les Jardins de l’Écusson », bâtiment C, 1245 avenue du Père Soulas, 34090 Montpellier",
    floor="4e étage, porte gauche au fond du couloir",
    access_code="4512B",
    details="interphone « Lefèvre–Giraud »",
    point=GeoPoint(lat=43.6287412, lon=3.8612345),
)


def practitioner() -> Practitioner:
    return Practitioner(
        id="marie-dupont",
        first_name="Marie-Hélène",
        last_name="Dupont-Française",
        rpps="10101234567",
        phones=["+33639980123"],
    )


def context(**overrides: object) -> AlertContext:
    values: dict[str, object] = {
        "alert_id": "a1",
        "kind": AlertKind.ALERT,
        "received_at": datetime(2025, 1, 15, 21, 41, 30, tzinfo=UTC),  # 22:41 in Paris (CET)
        "practitioner": practitioner(),
        "device": Device(id="btn-1", kind=DeviceKind.POCKET, label="bouton poche"),
        "location": ResolvedLocation(
            source=LocationSource.HOME_VISIT,
            point=ADDRESS.point,
            accuracy_m=25.0,
            address=ADDRESS,
            description="Visite à domicile déclarée",
        ),
        "convention_name": "Convention SSJ Hérault",
    }
    values.update(overrides)
    return AlertContext.model_validate(values)


def test_local_time_is_paris_time_with_dst() -> None:
    assert local_time(datetime(2025, 1, 15, 21, 41, tzinfo=UTC)) == "22:41"
    assert local_time(datetime(2025, 7, 15, 21, 41, tzinfo=UTC)) == "23:41"


def test_alert_sms_says_who_where_when_and_how_to_ack() -> None:
    sms = alert_sms(context())
    for expected in (
        "ALERTE VIGIE",
        "Dr Marie-Hélène Dupont-Francaise",
        "+33639980123",
        "RPPS 10101234567",
        "1245 avenue du Père Soulas, 34090 Montpellier",
        "4e étage, porte gauche",
        "code porte 4512B",
        "https://maps.google.com/?q=43.62874,3.86123",
        "+/-25 m",
        "visite à domicile déclarée",
        "22:41",
        "Convention SSJ Hérault",
        "Repondez 1 A47 pour prendre en charge",  # A47: reply_code("a1")
    ):
        assert expected in sms, expected
    assert is_gsm7(sms)
    assert segments(sms) <= 3, (len(sms), sms)


def test_short_alert_keeps_every_detail() -> None:
    short = ADDRESS.model_copy(update={"label": "2 rue Foch, 34000 Montpellier"})
    ctx = context(location=context().location.model_copy(update={"address": short}))
    sms = alert_sms(ctx)
    assert "(médecin généraliste)" in sms
    assert "interphone" in sms
    assert "Convention SSJ Hérault" in sms
    assert segments(sms) <= 3


def test_gps_fix_age_and_stale_position_in_words() -> None:
    fresh = context(
        location=ResolvedLocation(
            source=LocationSource.GPS,
            point=GeoPoint(lat=43.6, lon=3.88),
            accuracy_m=8.4,
            description="à 30 m du 2 rue Foch",
            fix_age_s=40,
        )
    )
    sms = alert_sms(fresh)
    assert "position GPS il y a 40 s" in sms
    assert "Lieu: aucune adresse connue a proximite" in sms
    stale = context(
        location=ResolvedLocation(
            source=LocationSource.LAST_KNOWN,
            point=GeoPoint(lat=43.6, lon=3.88),
            description="dernière position connue",
            stale=True,
            fix_age_s=725,
        )
    )
    assert "ANCIENNE dernière position connue il y a 12 min" in alert_sms(stale)


def gps_near_address(lat: float, lon: float) -> AlertContext:
    return context(
        location=ResolvedLocation(
            source=LocationSource.GPS,
            point=GeoPoint(lat=lat, lon=lon),
            accuracy_m=8,
            address=ADDRESS,  # the nearest known address
            description="Position GPS : ...",
            fix_age_s=12,
        )
    )


def test_gps_fix_away_from_the_nearest_address_is_described_relative_to_it() -> None:
    # ~45 m north-east of ADDRESS.point (43.6287412, 3.8612345)
    ctx = gps_near_address(43.6287412 + 0.000286, 3.8612345 + 0.000394)
    sms = alert_sms(ctx)
    # The distance wording itself belongs to dispatcher.directory.location (tested there).
    assert "Lieu: à 40 m au nord-est de Résidence" in sms
    assert "code porte" not in sms  # she is not in that building
    assert "https://maps.google.com/?q=43.62903,3.86163" in sms
    assert "Position GPS à 40 m au nord-est de Résidence" in texts.alert_speech(ctx)


def test_gps_fix_at_a_known_address_gives_floor_and_door_code() -> None:
    sms = alert_sms(gps_near_address(43.6287412 + 0.00003, 3.8612345))
    assert "4e étage" in sms and "code porte 4512B" in sms
    assert "position GPS il y a 12 s" in sms


def test_unknown_location_still_gives_who_and_ack() -> None:
    sms = alert_sms(context(location=ResolvedLocation(source=LocationSource.UNKNOWN, description="inconnue")))
    assert "Pas de coordonnees (position inconnue)" in sms
    assert "Repondez 1" in sms


def test_site_only_device() -> None:
    site = Site(id="mmg-1", kind=SiteKind.MMG, name="MMG Saint-Éloi", address=ADDRESS)
    ctx = context(
        practitioner=None,
        site=site,
        location=ResolvedLocation(source=LocationSource.SITE, address=ADDRESS, description="site"),
    )
    sms = alert_sms(ctx)
    assert "Bouton d'alerte de MMG Saint-Éloi" in sms
    assert "lieu d'exercice" in sms


@pytest.mark.parametrize(
    ("overrides", "mark"),
    [
        ({"kind": AlertKind.TEST}, "TEST - aucune action requise"),
        ({"duress": True}, "DANGER CONFIRME (annulation sous contrainte)"),
    ],
)
def test_test_and_duress_are_marked_first(overrides: dict[str, object], mark: str) -> None:
    sms = alert_sms(context(**overrides))
    assert sms.splitlines()[0].startswith(("TEST", "ALERTE VIGIE - DANGER CONFIRME"))
    assert mark in sms


def test_other_sms() -> None:
    ctx = context()
    false_alarm = false_alarm_sms(ctx)  # a row without an actor: the practitioner's own cancel
    assert "annulee par le praticien" in false_alarm
    assert "Dr Marie-Hélène Dupont-Francaise" in false_alarm
    duress = duress_notice_sms(ctx)
    assert "DANGER CONFIRME" in duress and "code porte 4512B" in duress
    ack = ack_notice_sms(ctx, texts.Facts("ack_notice", actor="Brigade de Castelnau"))
    assert "prise en charge par Brigade de Castelnau" in ack
    test = texts.test_sms(context(kind=AlertKind.TEST))
    assert "TEST - aucune action requise" in test and "bouton poche" in test
    for text in (false_alarm, duress, ack, test):
        assert is_gsm7(text)
        assert segments(text) <= 3


def test_alert_twiml_is_a_repeated_french_gather() -> None:
    twiml = alert_twiml(context(), GATHER)
    root = ET.fromstring(twiml.encode())
    assert root.tag == "Response"
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == GATHER
    says = gather.findall("Say")
    assert len(says) == 3
    for say in says:
        assert say.get("language") == "fr-FR"
        assert say.get("voice")
        assert "Le docteur Marie-Hélène Dupont-Française" in (say.text or "")
        assert "Code de la porte : 4, 5, 1, 2, B." in (say.text or "")
        assert "Appuyez sur 1" in (say.text or "")
        assert "répondre 1 par SMS" in (say.text or "")  # the fallback when a keypress cannot reach us
    # Silence: asked again through the dispatcher (the same action, without digits).
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.text == GATHER and redirect.get("method") == "POST"


def builder_twiml(speech: str, action: str, voice: str) -> str:
    """The same call built with twilio's TwiML builder: the reference the template must match."""
    response = VoiceResponse()
    gather = response.gather(num_digits=1, action=action, method="POST", timeout=5)
    for _ in range(texts.VOICE_REPEATS):
        gather.say(speech, language=texts.VOICE_LANGUAGE, voice=voice)
        gather.pause(length=1)
    response.redirect(action, method="POST")
    return str(response.to_xml())


@pytest.mark.parametrize(
    "ctx",
    [context(), context(kind=AlertKind.TEST), context(practitioner=None), context(duress=True)],
    ids=["visit", "test", "device-only", "duress"],
)
def test_alert_twiml_is_what_the_twilio_builder_renders(ctx: AlertContext) -> None:
    action = GATHER + "&n=2"  # an ampersand to escape in the attribute
    assert alert_twiml(ctx, action) == builder_twiml(texts.alert_speech(ctx), action, texts.DEFAULT_VOICE)


@given(
    first_name=st.text(max_size=40),
    action=st.text(max_size=60),
    voice=st.text(min_size=1, max_size=20),
)
def test_alert_twiml_escapes_like_the_builder(first_name: str, action: str, voice: str) -> None:
    # ElementTree cannot serialise control characters either; outside XML's alphabet, no comparison.
    assume(all(_xml_char(c) for c in first_name + action + voice))
    ctx = context(practitioner=practitioner().model_copy(update={"first_name": first_name}))
    rendered = alert_twiml(ctx, action, voice=voice)
    assert rendered == builder_twiml(texts.alert_speech(ctx), action, voice)
    ET.fromstring(rendered.encode())  # and it parses


def _xml_char(c: str) -> bool:
    code = ord(c)
    return code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000


LINK = "https://vigie.example.fr/r/Zk3q9_Xb2LmN0pQrS7tUvA"


def test_the_responder_link_is_in_every_sms_that_asks_to_act_and_never_dropped() -> None:
    short = ADDRESS.model_copy(update={"label": "2 rue Foch, 34000 Montpellier", "details": None})
    everyday = context(location=context().location.model_copy(update={"address": short}))
    sms = alert_sms(everyday, texts.Facts("alert", link=LINK))
    assert sms.endswith(f"Suivi en direct: {LINK}")
    assert "https://maps.google.com/?q=" in sms and "Convention SSJ Hérault" in sms  # room for everything
    assert segments(sms) <= 3
    # The longest address: details give way first, the map link last (the page shows the place).
    for facts in (
        texts.Facts("alert", round=1, link=LINK),
        texts.Facts("duress_notice", duress=True, link=LINK),
    ):
        long_sms = texts.sms_for(context(), facts)
        assert LINK in long_sms and "code porte 4512B" in long_sms and "4e étage" in long_sms
        assert segments(long_sms) <= 3
    assert "https://maps.google.com/?q=" in alert_sms(context()), "without a link the map link stays"


def test_the_page_says_the_duress_in_the_words_of_the_sms() -> None:
    plain = unicodedata.normalize("NFKD", texts.DURESS_PAGE).encode("ascii", "ignore").decode()
    assert plain == texts.DURESS_SMS
    assert texts.duress_words(reply=True).replace("É", "E").replace("é", "e") in alert_sms(
        context(reason="visite non cloturee", duress=True)
    )


def test_quarantine_alarms_say_the_device_the_paris_time_and_the_cost() -> None:
    until = datetime(2026, 11, 27, 16, 5, tzinfo=UTC)  # 17:05 in Paris (winter)
    assert texts.quarantine_started("btn-flood", until) == (
        "balise btn-flood coupée du broker jusqu'à 17:05 : elle envoyait des centaines de messages"
        " refusés par seconde (inondation) et ne peut pas alerter pendant ce temps ; vérifiez-la"
    )
    assert texts.quarantine_ended("btn-flood") == (
        "balise btn-flood rétablie sur le broker après sa quarantaine : elle peut de nouveau alerter"
    )


def test_broker_command_alarms_say_the_device_what_failed_and_what_it_means() -> None:
    refused = texts.broker_refused(["addClientRole : Client not found", "disableClient : Client not found"])
    assert texts.broker_command_failed("cut", "btn-flood", refused) == (
        "le broker n'a pas confirmé la coupure de la balise btn-flood (inondation) (refus : addClientRole :"
        " Client not found ; disableClient : Client not found) : elle n'est peut-être pas coupée ; le"
        " dispatcher continue de refuser ses messages ; vérifiez le broker"
    )
    assert texts.broker_command_failed("release", "btn-flood", texts.broker_silent(5.0)) == (
        "le broker n'a pas confirmé le rétablissement de la balise btn-flood après sa quarantaine (pas de"
        " réponse en 5 s) : elle ne peut peut-être toujours pas alerter ; rétablissez-la avec le compte"
        " d'administration du broker"
    )
    assert texts.broker_command_failed("revoke", "btn-vole", texts.broker_unsent()) == (
        "le broker n'a pas confirmé la désactivation au broker de la balise révoquée btn-vole (aucune"
        " session MQTT pour l'envoyer) : elle peut peut-être encore s'y connecter (ses messages restent"
        " refusés par le dispatcher) ; lancez vigie provision revoke --broker-admin-port"
    )


# -- a visit's alert not raised (she has no device): what operators and the fallback contact read --


def test_the_fallback_contact_is_told_who_where_and_what_to_do_in_gsm7() -> None:
    body = texts.visit_alert_not_raised_sms(
        "visite non clôturée", "Dr Marie-Hélène Dupont-Française", "+33639980123", ADDRESS, duress=False
    )
    assert body == (
        "ALERTE VIGIE NON TRANSMISE - visite non cloturée, praticien sans balise :"
        " Dr Marie-Hélène Dupont-Francaise. Lieu: Résidence \" Les Jardins de l'Écusson \", batiment C,"
        " 1245 avenue du Père Soulas, 34090 Montpellier (4e étage, porte gauche au fond du couloir,"
        " code 4512B). La police n'a PAS été prévenue : appelez-la au +33639980123 et prévenez la police."
    )
    assert is_gsm7(body) and segments(body) <= 3


def test_under_duress_nobody_is_told_to_call_her() -> None:
    sms = texts.visit_alert_not_raised_sms("visite non clôturée", "Dr X", "+33639980123", None, duress=True)
    alarm = texts.visit_alert_not_raised(
        "visite non clôturée", "marie-dupont", name="Dr X", phone="+33639980123", duress=True
    )
    for text in (sms, alarm):
        assert "+33639980123" not in text and "ne l'appelez PAS" in text and "SOUS CONTRAINTE" in text
    assert "Lieu: adresse inconnue" in sms
    assert alarm == (
        "visite non clôturée — Dr X (marie-dupont) : ALERTE NON DÉCLENCHÉE, aucune balise à son nom ;"
        " la police n'a PAS été prévenue : elle a répondu SOUS CONTRAINTE : ne l'appelez PAS, appelez la"
        " police (adresse dans « Visites en cours »)"
    )
