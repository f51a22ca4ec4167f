"""The log lines an operator or a technician reads are French, and say what happens next.

Golden: each line of the ``*_logs`` modules, filled as the code fills it. Then a
walk of the code: every ``log.*`` / ``logger.*`` call of dispatcher/, device/,
broker_config/ and sandbox/ (debug lines included) has French text, whether
written at the call or taken from a ``*_logs`` module.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from dispatcher.alerting import alert_logs, broker_logs, notification_logs
from dispatcher.alerting.delivery import NOT_WANTED
from dispatcher.alerting.reconciler import RESENT
from tests.dispatcher.test_cli_french import ENGLISH, _prose

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dispatcher", "device", "broker_config", "sandbox")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
# The CLI's list of English-only words but "file" (French too: « file d'envoi »), and words of
# English log lines it does not have ("heartbeat" is the protocol's word, in French too).
CLI_ENGLISH = re.compile(ENGLISH.pattern.replace("|file|", "|"), re.I)
LOG_ENGLISH = re.compile(
    r"\b(failed|refused|rejected|cannot|could|not|no|unknown|ignored|dropped|was|were|now|when|we|while|"
    r"after|before|retrying|retry|will|stored|sent|again|being|waiting|already|more|too|slow|outcome|"
    r"keypress|status|event|alert|provider|store|gave|up|body|pass|dead|reach|queued|"
    r"disconnected|connected|visit|check|subscribed|answer|handled|found|missing|invalid|error)\b",
    re.I,
)

GOLDEN: list[tuple[str, tuple[object, ...], str]] = [
    (
        broker_logs.UNREACHABLE,
        ("mqtt.vigie.test", 8883, "[Errno 111] Connection refused"),
        "broker mqtt.vigie.test:8883 injoignable : [Errno 111] Connection refused ;"
        " nouvel essai après un délai croissant",
    ),
    (
        broker_logs.CONNECTED_WEB_ONLY,
        (),
        "connecté au broker (rôle web : ni alertes ni heartbeats, laissés aux instances de rôle all)",
    ),
    (
        broker_logs.REFUSED,
        ("Not authorized",),
        "le broker refuse la connexion du dispatcher : Not authorized ; vérifiez le compte ou le"
        " certificat du dispatcher (nouvel essai après un délai croissant)",
    ),
    (
        broker_logs.START_UNREACHABLE,
        ("mqtt.vigie.test", 8883, "[Errno 111] Connection refused"),
        "démarrage : broker mqtt.vigie.test:8883 injoignable : [Errno 111] Connection refused",
    ),
    (
        broker_logs.START_NO_CONNACK,
        ("mqtt.vigie.test", 8883, 10.0),
        "démarrage : le broker mqtt.vigie.test:8883 n'a pas accepté la connexion en 10.0 s (compte,"
        " certificat ou ACL ?)",
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
    (
        notification_logs.PROVIDER_RESULT,
        ('SMS', '+33639980151', 'alerts/a-7f3k/1/0', 'issue inconnue', None, None, 'timeout', 'non'),
        "Twilio, SMS vers +33639980151 (réf. alerts/a-7f3k/1/0) : issue inconnue ; sid=None statut=None"
        " erreur=timeout renvoi sûr=non",
    ),
    (
        notification_logs.PROVIDER_BUG,
        (),
        "erreur inattendue autour d'une requête au fournisseur : issue inconnue",
    ),
    (
        notification_logs.CLAIM_FAILED,
        (),
        "notifications en attente non réservées (base indisponible ?) : elles restent en attente pour le"
        " prochain passage",
    ),
    (
        notification_logs.SEND_CRASHED,
        ('appel', 43, '+33465710102'),
        "appel n° 43 vers +33465710102 : erreur interne pendant l'envoi ; laissé « en cours d'envoi », il"
        " sera rapproché avec le fournisseur à l'expiration de son bail",
    ),
    (
        notification_logs.NO_RESPONDER_LINK,
        (42,),
        "lien de prise en charge impossible à créer pour l'envoi n° 42 : SMS envoyé sans lui",
    ),
    (
        notification_logs.OUTCOME_UNKNOWN,
        ('SMS', 42, '+33639980151', 'timeout: TimeoutError'),
        "SMS n° 42 vers +33639980151 : issue inconnue (timeout: TimeoutError) ; rapproché avec les"
        " relevés du fournisseur avant tout renvoi, l'escalade continue",
    ),
    (
        notification_logs.NOT_WANTED,
        ("SMS", 42, "+33639980151", NOT_WANTED),
        "SMS n° 42 vers +33639980151 : non envoyé : l'alerte est close ou prise en charge (fournisseur"
        " injoignable jusque-là)",
    ),
    (
        notification_logs.FAILED,
        ('appel', 43, '+33465710102', "21211: Invalid 'To' Phone Number"),
        "appel n° 43 vers +33465710102 en échec : 21211: Invalid 'To' Phone Number ; l'escalade essaie"
        " l'autre canal de ce contact, et passe au palier suivant si plus personne du palier ne peut être"
        " joint",
    ),
    (
        notification_logs.REQUEUED_AT_RESTART,
        ('SMS', 42),
        "SMS n° 42 attendait un nouvel essai quand le dispatcher s'est arrêté : remis en file",
    ),
    (
        notification_logs.UNCERTAIN_AT_RESTART,
        ('appel', 43),
        "appel n° 43 était en cours d'envoi quand le dispatcher s'est arrêté : issue inconnue, rapproché"
        " avec le fournisseur",
    ),
    (
        notification_logs.PROVIDER_BACK,
        (),
        'le fournisseur SMS/voix répond de nouveau : les notifications en attente partent',
    ),
    (
        notification_logs.RECONCILE_PASS_FAILED,
        (30.0,),
        'passage de rapprochement en échec ; le prochain dans 30 s',
    ),
    (
        notification_logs.RECONCILE_PAUSED,
        ('HTTP 503',),
        'rapprochement suspendu : fournisseur indisponible (HTTP 503) ; repris au prochain passage',
    ),
    (
        notification_logs.ABANDONED,
        ('SMS', 42, 'sending', 'unknown'),
        'SMS n° 42 laissé par une instance disparue : statut sending → unknown',
    ),
    (
        notification_logs.ADOPTED,
        ('SMS', 42, '+33639980151', 'SM0123', 'delivered', 'unknown'),
        "SMS n° 42 vers +33639980151 trouvé chez le fournisseur (sid SM0123, statut delivered) : repris"
        " tel quel (était unknown)",
    ),
    (
        notification_logs.RESENT,
        ("SMS", 42, "+33639980151", "unknown", RESENT),
        "SMS n° 42 vers +33639980151 renvoyé (était unknown) : introuvable chez le fournisseur après un"
        " envoi incertain : renvoyée",
    ),
    (
        notification_logs.DROPPED,
        ('appel', 43, '+33465710102', 'unknown', 'alerte resolved : plus nécessaire'),
        'appel n° 43 vers +33465710102 abandonné (était unknown) : alerte resolved : plus nécessaire',
    ),
    (
        notification_logs.DISOWNED,
        ('SM0123, SM0456',),
        'envois SM0123, SM0456 du fournisseur impossibles à attribuer à une seule notification : écartés',
    ),
    (
        notification_logs.WEBHOOK_TOO_BIG,
        (65536, 'https://vigie.example/twilio/status'),
        'webhook Twilio refusé : corps de plus de 65536 octets (url=https://vigie.example/twilio/status)',
    ),
    (
        notification_logs.WEBHOOK_UNSIGNED,
        ('https://vigie.example/twilio/status',),
        "webhook Twilio refusé : pas d'en-tête X-Twilio-Signature"
        " (url=https://vigie.example/twilio/status)",
    ),
    (
        notification_logs.WEBHOOK_BAD_SIGNATURE,
        ('https://vigie.example/twilio/status',),
        "webhook Twilio refusé : signature invalide pour url=https://vigie.example/twilio/status (faux,"
        " ou jeton Twilio ou URL publique mal réglés)",
    ),
    (
        notification_logs.STATUS_INCOMPLETE,
        ({'MessageStatus': 'sent'},),
        "rappel de statut Twilio sans sid ou sans statut, ignoré : {'MessageStatus': 'sent'}",
    ),
    (
        notification_logs.STATUS_UNKNOWN_SID,
        ('delivered', 'SM0123', 'alerts/a-7f3k/1/0'),
        'statut delivered reçu pour un envoi inconnu (sid SM0123, réf. alerts/a-7f3k/1/0) : ignoré',
    ),
    (
        notification_logs.STATUS_OF_A_VISIT_TEXT,
        ('undelivered', 'visit-7f3k-check', 'SM0123'),
        'statut undelivered du SMS visit-7f3k-check, hors alerte (sid SM0123)',
    ),
    (
        notification_logs.VISIT_TEXT_OUTCOME,
        ("visite v-7f3k : SMS de vérification", notification_logs.outcome("failed"), "http-500"),
        "visite v-7f3k : SMS de vérification : refusé (http-500)",
    ),
    (
        notification_logs.VISIT_TEXT_RETRY,
        ("visite v-7f3k : SMS au contact de secours", 2),
        "visite v-7f3k : SMS au contact de secours : fournisseur injoignable (tentative 2), nouvel essai",
    ),
    (
        notification_logs.VISIT_TEXT_CRASHED,
        ("visite v-7f3k : SMS de vérification",),
        "visite v-7f3k : SMS de vérification : envoi en échec",
    ),
    (
        notification_logs.VISIT_TEXT_ABANDONED,
        ("visit-7f3k-check",),
        "arrêt : SMS visit-7f3k-check interrompu avant sa réponse ; repris au prochain démarrage s'il"
        " n'était pas parti",
    ),
    (
        notification_logs.VISIT_TEXT_RESUMED,
        ("visite v-7f3k : SMS de vérification", "v-7f3k-check"),
        "visite v-7f3k : SMS de vérification : repris après un arrêt (réf. v-7f3k-check)",
    ),
    (
        notification_logs.VISIT_TEXT_EXPIRED,
        ("visite v-7f3k : SMS de vérification", "v-7f3k-check"),
        "visite v-7f3k : SMS de vérification : non envoyé, sa fenêtre est passée pendant un arrêt"
        " (réf. v-7f3k-check)",
    ),
    (
        notification_logs.VISIT_TEXT_FATE_UNKNOWN,
        ("visite v-7f3k : SMS de vérification", "v-7f3k-check"),
        "visite v-7f3k : SMS de vérification : une requête était partie avant un arrêt, sort inconnu :"
        " non renvoyée (réf. v-7f3k-check)",
    ),
    (
        notification_logs.VISIT_TEXT_NOT_WANTED,
        ("visite v-7f3k : SMS de vérification", "v-7f3k-check"),
        "visite v-7f3k : SMS de vérification : plus envoyé, la visite n'attend plus cette réponse"
        " (réf. v-7f3k-check)",
    ),
    (
        notification_logs.VISIT_TEXT_WANTED_UNKNOWN,
        ("visite v-7f3k : SMS de vérification", "v-7f3k-check"),
        "visite v-7f3k : SMS de vérification : impossible de vérifier que la visite attend encore cette"
        " réponse (réf. v-7f3k-check) ; envoyé quand même",
    ),
    (
        notification_logs.VISIT_TEXT_UNRECORDED,
        ("visite v-7f3k : SMS de vérification", "v-7f3k-check"),
        "visite v-7f3k : SMS de vérification : état de l'envoi non enregistré en base (réf. v-7f3k-check) ;"
        " l'envoi continue",
    ),
    (
        notification_logs.KEYPRESS_UNKNOWN_CALL,
        ('CA0123', None),
        'touche pressée pendant un appel inconnu (sid CA0123, réf. None) : ignorée',
    ),
    (
        notification_logs.SMS_WITHOUT_SID,
        (),
        'SMS reçu sans MessageSid : ignoré (un SMS signé par Twilio en a toujours un)',
    ),
    (
        notification_logs.SMS_REPLAYED,
        ('SM0123',),
        'SMS reçu SM0123 déjà traité : webhook rejoué, ignoré',
    ),
    (
        notification_logs.REPLY_CODE_AMBIGUOUS,
        ('K7', '+33639980151', 2),
        "code de réponse K7 de +33639980151 : 2 alertes ouvertes le portent, aucune n'est choisie ; le"
        " contact est invité à prendre en charge par l'appel (touche 1) ou à appeler la console",
    ),
    (
        alert_logs.REJECTED,
        ('vigie/v1/btn-flood/alert', 'btn-flood', 'bad_signature', 'signature invalide', 'hmac mismatch'),
        "message refusé sur vigie/v1/btn-flood/alert (balise btn-flood) : bad_signature, signature"
        " invalide : hmac mismatch",
    ),
    (
        alert_logs.REJECTED_MORE,
        (199, 'bad_signature', 'btn-flood'),
        "refusés : 199 autres messages bad_signature de la balise btn-flood dans l'intervalle",
    ),
    (
        alert_logs.REJECTED_MORE_DETAIL,
        (199, 10.0),
        "199 de plus ces 10 dernières secondes (journalisé une fois par intervalle)",
    ),
    (
        alert_logs.OVER_RATE,
        ('alert',),
        "alert d'une balise au-delà de son débit",
    ),
    (
        alert_logs.HEARTBEAT_SEQ_OLD,
        (1041,),
        "heartbeat de seq 1041, pas au-dessus du dernier",
    ),
    (
        alert_logs.SEQ_USED,
        (1041,),
        "seq 1041 déjà utilisé ou trop ancien",
    ),
    (
        alert_logs.TS_OLD,
        (1795800000000,),
        "horodatage 1795800000000 trop ancien",
    ),
    (
        alert_logs.TS_AHEAD,
        (1795800000000,),
        "horodatage 1795800000000 en avance sur notre horloge",
    ),
    (
        alert_logs.CANCEL_SEQ_USED,
        (1042,),
        "seq 1042 d'annulation déjà utilisé (base)",
    ),
    (
        alert_logs.POSITIONS_WAITING,
        (),
        "trop de positions en attente",
    ),
    (
        alert_logs.POSITION_NOT_RECORDED,
        (),
        "position non enregistrée",
    ),
    (
        alert_logs.NOT_ITS_ALERT,
        ('a-7f3k',),
        "l'alerte a-7f3k n'est pas celle de cette balise",
    ),
    (
        alert_logs.ALERT_CLOSED,
        ('a-7f3k', 'resolved'),
        "l'alerte a-7f3k est close (état resolved)",
    ),
    (
        alert_logs.BATCH_FAILED,
        (12,),
        "réception : erreur interne sur un lot de 12 message(s), acquittés au broker sans suite ; les"
        " balises renvoient leurs alertes tant qu'elles n'ont pas reçu « reçue »",
    ),
    (
        alert_logs.MESSAGE_FAILED,
        ('vigie/v1/btn-cabinet-boutonnet/alert',),
        "réception : erreur interne sur un message de vigie/v1/btn-cabinet-boutonnet/alert ; refusé",
    ),
    (
        alert_logs.NEW_COUNTER,
        ('btn-cabinet-boutonnet', 1795800000, 1041),
        "balise btn-cabinet-boutonnet : numéros de séquence repartis de 1795800000 (étaient à 1041) ;"
        " dossier d'état neuf ou perdu sur la balise",
    ),
    (
        alert_logs.STORE_DOWN_ALERTS,
        (3, 'database is locked'),
        "BASE INDISPONIBLE : 3 alerte(s) gardée(s) sans acquittement, nouvel essai en boucle ; les"
        " balises les renvoient : database is locked",
    ),
    (
        alert_logs.STORE_DOWN_CANCEL,
        ('database is locked',),
        "BASE INDISPONIBLE pendant une annulation, gardée sans acquittement, nouvel essai en boucle :"
        " database is locked",
    ),
    (
        alert_logs.REJECTIONS_NOT_STORED,
        (2,),
        "2 refus non enregistré(s) dans la base ; ils sont comptés et journalisés ci-dessus",
    ),
    (
        alert_logs.DOWNLINK_IMPOSSIBLE,
        ('received', 'btn-cabinet-boutonnet'),
        "message descendant « received » vers la balise btn-cabinet-boutonnet impossible : pas de clé ou"
        " pas de broker",
    ),
    (
        alert_logs.POSITIONS_STORE_DOWN,
        ('database is locked',),
        "positions non enregistrées pour l'instant (database is locked) ; nouvel essai",
    ),
    (
        alert_logs.POSITION_FAILED,
        ('a-7f3k',),
        "position de l'alerte a-7f3k non enregistrée (erreur interne)",
    ),
    (
        alert_logs.EVENT_BEFORE_ESCALATION,
        ('AckTimeout(tier=0, round=0)', 'a-7f3k'),
        "événement AckTimeout(tier=0, round=0) pour l'alerte a-7f3k arrivé avant le début de son escalade"
        " : ignoré",
    ),
    (
        alert_logs.CANCEL_UNKNOWN_ALERT,
        ('c-19', 'btn-cabinet-boutonnet', 'a-7f3k'),
        "annulation c-19 de la balise btn-cabinet-boutonnet pour une alerte inconnue a-7f3k : refusée, la"
        " balise en est avertie",
    ),
    (
        alert_logs.CANCEL_OTHER_DEVICE,
        ('c-19', 'a-7f3k'),
        "annulation c-19 : l'alerte a-7f3k appartient à une autre balise ; ignorée",
    ),
    (
        alert_logs.CANCEL_REFUSED,
        ('a-7f3k', 'btn-cabinet-boutonnet', 'no_pin', "aucun code d'annulation n'est défini pour ce bouton"),
        "annulation de l'alerte a-7f3k par la balise btn-cabinet-boutonnet refusée (no_pin : aucun code"
        " d'annulation n'est défini pour ce bouton) : l'alerte continue",
    ),
    (
        alert_logs.OPERATOR_ALARM,
        ('a-7f3k', "annulation refusée (btn-cabinet-boutonnet) : code faux, l'alerte continue"),
        "ALARME OPÉRATEUR (alerte a-7f3k) : annulation refusée (btn-cabinet-boutonnet) : code faux,"
        " l'alerte continue",
    ),
    (
        alert_logs.OPERATOR_ALARM_NOT_STORED,
        ('non',),
        "alarme opérateur non enregistrée dans la base (déjà dans l'historique de l'alerte : non) ; elle"
        " part quand même aux consoles",
    ),
    (
        alert_logs.TIMER_PASS_FAILED,
        (),
        "passage des minuteries d'escalade en échec ; nouvel essai",
    ),
    (
        alert_logs.UNSTARTED,
        ('a-7f3k',),
        "alerte a-7f3k enregistrée sans escalade (dispatcher arrêté entre-temps) : escalade démarrée"
        " maintenant",
    ),
]


@pytest.mark.parametrize(("fmt", "args", "expected"), GOLDEN, ids=[g[2][:40] for g in GOLDEN])
def test_golden_log_lines(fmt: str, args: tuple[object, ...], expected: str) -> None:
    assert fmt % args == expected


def _log_messages(path: Path) -> list[tuple[int, str | None]]:
    """The text of every logging call in ``path`` (None when it is neither a literal nor a
    constant of a ``*_logs`` module)."""
    tree = ast.parse(path.read_text(), str(path))
    modules = {
        alias.asname or alias.name: f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
        if alias.name.endswith("_logs")
    }
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
        if node.func.attr in LEVELS and "log" in name.lower() and node.args:
            message = node.args[1] if node.func.attr == "log" else node.args[0]
            found.append((node.lineno, _text(message, modules)))
    return found


def _text(message: ast.expr, modules: dict[str, str]) -> str | None:
    """The message's text: a literal, or the constant of a ``*_logs`` module it names."""
    if isinstance(message, ast.Constant) and isinstance(message.value, str):
        return message.value
    if (
        isinstance(message, ast.Attribute)
        and isinstance(message.value, ast.Name)
        and message.value.id in modules
    ):
        return str(getattr(importlib.import_module(modules[message.value.id]), message.attr))
    return None


def test_every_log_line_is_french() -> None:
    lines: list[tuple[str, str]] = []
    unread: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for lineno, text in _log_messages(path):
                where = f"{path.relative_to(ROOT)}:{lineno}"
                if text is None:
                    unread.append(where)
                else:
                    lines.append((where, text))
    assert len(lines) > 100  # the walk found the code's log calls
    english = [(w, t) for w, t in lines if CLI_ENGLISH.search(_prose(t)) or LOG_ENGLISH.search(_prose(t))]
    assert english == []
    assert unread == []  # a message built elsewhere would escape this check


def test_every_line_of_the_logs_modules_is_checked_by_a_golden() -> None:
    for module in (alert_logs, broker_logs, notification_logs):
        formats = {v for k, v in vars(module).items() if k.isupper() and isinstance(v, str)}
        assert formats <= {fmt for fmt, _, _ in GOLDEN}, module.__name__
