"""What the operator reads in the dispatcher's log about its link to the MQTT broker, in French.

The one source of truth for the log lines of :mod:`dispatcher.alerting.mqtt` (the
session), :mod:`dispatcher.fleet.broker_control` (commands to the broker's
dynamic-security plugin) and :mod:`dispatcher.fleet.quarantine` (a flooding device
cut off). Pure: %-style formats, filled lazily by :mod:`logging` with the
arguments named in each comment (ids as they are, times already in
Europe/Paris). Each line says what happened and what follows; golden tests in
tests/dispatcher/test_log_texts.py.
"""

from __future__ import annotations

from typing import Final

# -- the session (dispatcher.alerting.mqtt) ------------------------------------------------------

#: host, port, the error (refused, unreachable, TLS or certificate)
UNREACHABLE: Final = "broker %s:%s injoignable : %s ; nouvel essai après un délai croissant"
#: host, port, the error: at start-up, ``vigie serve`` stops (systemd restarts it)
START_UNREACHABLE: Final = "démarrage : broker %s:%s injoignable : %s"
#: host, port, seconds
START_NO_CONNACK: Final = (
    "démarrage : le broker %s:%s n'a pas accepté la connexion en %s s (compte, certificat ou ACL ?)"
)
#: the broker's reason code
REFUSED: Final = (
    "le broker refuse la connexion du dispatcher : %s ; vérifiez le compte ou le certificat"
    " du dispatcher (nouvel essai après un délai croissant)"
)
CONNECTED: Final = "connecté au broker, abonné au groupe partagé des dispatchers"
CONNECTED_WEB_ONLY: Final = (
    "connecté au broker (rôle web : ni alertes ni heartbeats, laissés aux instances de rôle all)"
)
DISCONNECTED_STOPPING: Final = "déconnecté du broker (arrêt du dispatcher)"
#: the broker's or paho's reason
DISCONNECTED: Final = (
    "connexion au broker perdue (%s) : reconnexion avec un délai croissant ;"
    " les balises gardent leurs alertes et les renvoient"
)
#: seconds waited
DISCONNECT_UNWRITTEN: Final = (
    "arrêt : DISCONNECT non écrit au broker en %s s ; la connexion se ferme sans lui"
)
#: topic, paho's return code
PUBLISH_QUEUED: Final = (
    "publication sur %s gardée en file, le broker est déconnecté (code %s) : envoyée à la reconnexion"
)
#: topic
NOT_ADMITTED: Final = (
    "message sur %s non admis (erreur interne) : pas d'acquittement, le broker le redélivre"
)
CONTROL_ANSWER_FAILED: Final = (
    "réponse du greffon de sécurité dynamique du broker non traitée (erreur interne)"
)

# -- commands to the broker (dispatcher.fleet.broker_control) ---------------------------------

#: the commands' names
CONTROL_NO_SESSION: Final = "commande au broker impossible, aucune session MQTT : %s non envoyée(s)"
#: the alarm's text (dispatcher.alerting.texts)
OPERATOR_ALARM: Final = "ALARME OPÉRATEUR : %s"
#: the alarm's text
OPERATOR_ALARM_NOT_STORED: Final = (
    "alarme opérateur non enregistrée dans la base (elle part quand même aux consoles) : %s"
)

# -- a flooding device (dispatcher.fleet.quarantine) ------------------------------------------

#: device id
FLOOD_CUT: Final = "balise %s : inondation, coupure demandée au broker"
#: seconds until the next try
QUARANTINE_PASS_FAILED: Final = (
    "quarantaines : lecture ou levée impossible dans la base ; nouvel essai dans %.0f s"
)
#: device id, the end (HH:MM, Europe/Paris)
QUARANTINE_NOT_STORED: Final = (
    "quarantaine de la balise %s non enregistrée dans la base : ce dispatcher la lèvera lui-même à %s"
    " (heure de Paris)"
)
