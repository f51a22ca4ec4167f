"""The log lines an operator or a technician reads are French, and say what happens next.

Golden: each line of the ``*_logs`` modules, filled as the code fills it. Then a
walk of the code: every ``log.*`` / ``logger.*`` call of dispatcher/, device/,
broker_config/ and sandbox/ (debug lines included) has French text, whether
written at the call or taken from a ``*_logs`` module.
"""

from __future__ import annotations

import pytest

from dispatcher import broker_logs

GOLDEN: list[tuple[str, tuple[object, ...], str]] = [
    (
        broker_logs.UNREACHABLE,
        ("mqtt.vigie.test", 8883, "[Errno 111] Connection refused"),
        "broker mqtt.vigie.test:8883 injoignable : [Errno 111] Connection refused ;"
        " nouvel essai après un délai croissant",
    ),
    (
        broker_logs.REFUSED,
        ("Not authorized",),
        "le broker refuse la connexion du dispatcher : Not authorized ; vérifiez le compte ou le"
        " certificat du dispatcher (nouvel essai après un délai croissant)",
    ),
    (broker_logs.CONNECTED, (), "connecté au broker, abonné au groupe partagé des dispatchers"),
    (broker_logs.DISCONNECTED_STOPPING, (), "déconnecté du broker (arrêt du dispatcher)"),
    (
        broker_logs.DISCONNECTED,
        ("Unspecified error",),
        "connexion au broker perdue (Unspecified error) : reconnexion avec un délai croissant ;"
        " les balises gardent leurs alertes et les renvoient",
    ),
    (
        broker_logs.DISCONNECT_UNWRITTEN,
        (2.0,),
        "arrêt : DISCONNECT non écrit au broker en 2.0 s ; la connexion se ferme sans lui",
    ),
    (
        broker_logs.PUBLISH_QUEUED,
        ("vigie/v1/btn-cabinet-boutonnet/down", 4),
        "publication sur vigie/v1/btn-cabinet-boutonnet/down gardée en file, le broker est déconnecté"
        " (code 4) : envoyée à la reconnexion",
    ),
    (
        broker_logs.NOT_ADMITTED,
        ("vigie/v1/btn-cabinet-boutonnet/alert",),
        "message sur vigie/v1/btn-cabinet-boutonnet/alert non admis (erreur interne) : pas"
        " d'acquittement, le broker le redélivre",
    ),
    (
        broker_logs.CONTROL_ANSWER_FAILED,
        (),
        "réponse du greffon de sécurité dynamique du broker non traitée (erreur interne)",
    ),
    (
        broker_logs.CONTROL_NO_SESSION,
        ("disableClient, kickClient",),
        "commande au broker impossible, aucune session MQTT : disableClient, kickClient non envoyée(s)",
    ),
    (
        broker_logs.OPERATOR_ALARM,
        ("balise btn-flood coupée du broker",),
        "ALARME OPÉRATEUR : balise btn-flood coupée du broker",
    ),
    (
        broker_logs.OPERATOR_ALARM_NOT_STORED,
        ("balise btn-flood coupée du broker",),
        "alarme opérateur non enregistrée dans la base (elle part quand même aux consoles) :"
        " balise btn-flood coupée du broker",
    ),
    (broker_logs.FLOOD_CUT, ("btn-flood",), "balise btn-flood : inondation, coupure demandée au broker"),
    (
        broker_logs.QUARANTINE_PASS_FAILED,
        (30.0,),
        "quarantaines : lecture ou levée impossible dans la base ; nouvel essai dans 30 s",
    ),
    (
        broker_logs.QUARANTINE_NOT_STORED,
        ("btn-flood", "22:15"),
        "quarantaine de la balise btn-flood non enregistrée dans la base : ce dispatcher la lèvera"
        " lui-même à 22:15 (heure de Paris)",
    ),
]


@pytest.mark.parametrize(("fmt", "args", "expected"), GOLDEN, ids=[g[2][:40] for g in GOLDEN])
def test_golden_log_lines(fmt: str, args: tuple[object, ...], expected: str) -> None:
    assert fmt % args == expected


def test_every_line_of_the_logs_modules_is_checked_by_a_golden() -> None:
    for module in (broker_logs,):
        formats = {v for k, v in vars(module).items() if k.isupper() and isinstance(v, str)}
        assert formats <= {fmt for fmt, _, _ in GOLDEN}, module.__name__
