"""What the operator reads in the dispatcher's log about alerts and what devices send, in French.

The one source of truth for the log lines of :mod:`dispatcher.alerting.ingest` (the
reception: store outages, sequence counters, downlinks),
:mod:`dispatcher.alerting.rejectlog` (refused messages), :mod:`dispatcher.alerting.positions`
(live positions) and :mod:`dispatcher.alerting.engine` (cancels, escalation timers,
operator alarms about an alert). Pure: %-style formats, filled lazily by
:mod:`logging` with the arguments named in each comment; the details of a
refusal written by the dispatcher are here too (they go to the ``rejections``
table). Rejection reasons stay as their code (the metrics label, what one
searches for), followed by :func:`reason` in French. Golden tests in
tests/dispatcher/test_log_texts.py.
"""

from __future__ import annotations

from typing import Final

_REASONS: Final = {
    "too_large": "message trop gros",
    "not_json": "pas du JSON",
    "bad_version": "version du protocole inconnue",
    "bad_schema": "contenu non conforme au protocole",
    "topic_mismatch": "sujet MQTT et contenu discordants",
    "unknown_device": "balise inconnue ou révoquée",
    "bad_signature": "signature invalide",
    "replay": "rejeu",
    "stale": "horodatage trop ancien",
    "future_ts": "horodatage dans le futur",
    "rate_limited": "trop de messages de cette balise",
    "queue_full": "file de réception de cette balise pleine (inondation)",
    "too_deep": "JSON trop imbriqué",
    "not_its_alert": "position pour une alerte qui n'est pas la sienne",
    "alert_closed": "position pour une alerte close",
    "internal_error": "erreur interne du dispatcher",
}


def reason(code: str) -> str:
    """A rejection reason (:class:`protocol.codec.RejectReason`) in French."""
    return _REASONS.get(code, code)


# -- refused messages (dispatcher.alerting.rejectlog) --------------------------------------------

#: topic, device id (or ?), reason code, reason(…), detail
REJECTED: Final = "message refusé sur %s (balise %s) : %s, %s : %s"
#: how many, reason code, device id (or ?)
REJECTED_MORE: Final = "refusés : %d autres messages %s de la balise %s dans l'intervalle"
#: how many, seconds: the stored detail of that summary
REJECTED_MORE_DETAIL: Final = "%d de plus ces %.0f dernières secondes (journalisé une fois par intervalle)"

# -- details of a refusal (dispatcher.alerting.ingest, dispatcher.alerting.positions) ---------------------

#: message type
OVER_RATE: Final = "%s d'une balise au-delà de son débit"
#: seq
HEARTBEAT_SEQ_OLD: Final = "heartbeat de seq %s, pas au-dessus du dernier"
#: seq
SEQ_USED: Final = "seq %s déjà utilisé ou trop ancien"
#: ts (ms)
TS_OLD: Final = "horodatage %s trop ancien"
#: ts (ms)
TS_AHEAD: Final = "horodatage %s en avance sur notre horloge"
#: seq
CANCEL_SEQ_USED: Final = "seq %s d'annulation déjà utilisé (base)"
POSITIONS_WAITING: Final = "trop de positions en attente"
POSITION_NOT_RECORDED: Final = "position non enregistrée"
#: alert id
NOT_ITS_ALERT: Final = "l'alerte %s n'est pas celle de cette balise"
#: alert id, its state
ALERT_CLOSED: Final = "l'alerte %s est close (état %s)"

# -- the reception (dispatcher.alerting.ingest) --------------------------------------------------

#: how many messages
BATCH_FAILED: Final = (
    "réception : erreur interne sur un lot de %d message(s), acquittés au broker sans suite ; les"
    " balises renvoient leurs alertes tant qu'elles n'ont pas reçu « reçue »"
)
#: topic
MESSAGE_FAILED: Final = "réception : erreur interne sur un message de %s ; refusé"
#: device id, new seq, the old high
NEW_COUNTER: Final = (
    "balise %s : numéros de séquence repartis de %d (étaient à %d) ; dossier d'état neuf ou perdu"
    " sur la balise"
)
#: how many alerts, the error
STORE_DOWN_ALERTS: Final = (
    "BASE INDISPONIBLE : %d alerte(s) gardée(s) sans acquittement, nouvel essai en boucle ; les"
    " balises les renvoient : %s"
)
#: the error
STORE_DOWN_CANCEL: Final = (
    "BASE INDISPONIBLE pendant une annulation, gardée sans acquittement, nouvel essai en boucle : %s"
)
#: how many
REJECTIONS_NOT_STORED: Final = (
    "%d refus non enregistré(s) dans la base ; ils sont comptés et journalisés ci-dessus"
)
#: downlink kind, device id
DOWNLINK_IMPOSSIBLE: Final = (
    "message descendant « %s » vers la balise %s impossible : pas de clé ou pas de broker"
)

# -- live positions (dispatcher.alerting.positions) ----------------------------------------------

#: the error
POSITIONS_STORE_DOWN: Final = "positions non enregistrées pour l'instant (%s) ; nouvel essai"
#: alert id
POSITION_FAILED: Final = "position de l'alerte %s non enregistrée (erreur interne)"

# -- the engine (dispatcher.alerting.engine) -----------------------------------------------------

#: the event, alert id
EVENT_BEFORE_ESCALATION: Final = (
    "événement %s pour l'alerte %s arrivé avant le début de son escalade : ignoré"
)
#: cancel id, device id, alert id
CANCEL_UNKNOWN_ALERT: Final = (
    "annulation %s de la balise %s pour une alerte inconnue %s : refusée, la balise en est avertie"
)
#: cancel id, alert id
CANCEL_OTHER_DEVICE: Final = "annulation %s : l'alerte %s appartient à une autre balise ; ignorée"
#: alert id, device id, the verdict's code, why (dispatcher.alerting.cancels.REFUSALS)
CANCEL_REFUSED: Final = (
    "annulation de l'alerte %s par la balise %s refusée (%s : %s) : l'alerte continue"
)
#: alert id (or None), the alarm's text
OPERATOR_ALARM: Final = "ALARME OPÉRATEUR (alerte %s) : %s"
#: oui/non
OPERATOR_ALARM_NOT_STORED: Final = (
    "alarme opérateur non enregistrée dans la base (déjà dans l'historique de l'alerte : %s) ;"
    " elle part quand même aux consoles"
)
TIMER_PASS_FAILED: Final = "passage des minuteries d'escalade en échec ; nouvel essai"
#: alert id
UNSTARTED: Final = (
    "alerte %s enregistrée sans escalade (dispatcher arrêté entre-temps) : escalade démarrée maintenant"
)
