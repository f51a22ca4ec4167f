"""What the operator reads in the dispatcher's log about the SMS and calls it sends, in French.

The one source of truth for the log lines of :mod:`dispatcher.alerting.delivery` (the
sends), :mod:`dispatcher.alerting.notifier` (each request to Twilio and its outcome),
:mod:`dispatcher.alerting.reconciler` and the recovery in :mod:`dispatcher.alerting.engine`
(sends left uncertain by a crash or a timeout), :mod:`dispatcher.alerting.webhooks` and
:mod:`dispatcher.alerting.smsreplies` (what Twilio calls back), :mod:`dispatcher.visits.side_sms`
(a visit's own texts). Pure: %-style formats,
filled lazily by :mod:`logging` with the arguments named in each comment.

A send is named ``SMS n° 42 vers +33639980151`` or ``appel n° 43 vers …``:
:func:`channel` gives the word (both masculine, so the lines agree with
either). Statuses (``pending``, ``unknown``, Twilio's ``delivered``…) and
ids stay as the database and Twilio write them: they are what one searches
for. Golden tests in tests/dispatcher/test_log_texts.py.
"""

from __future__ import annotations

from typing import Final

_CHANNELS: Final = {"sms": "SMS", "voice": "appel", "call": "appel"}


def channel(name: str) -> str:
    """``SMS`` or ``appel`` for a notification's channel (or Twilio's request kind)."""
    return _CHANNELS.get(name, name)


_OUTCOMES: Final = {"accepted": "accepté", "failed": "refusé", "unknown": "issue inconnue"}


def outcome(name: str) -> str:
    """A provider request's outcome: ``accepté``, ``refusé`` or ``issue inconnue``."""
    return _OUTCOMES.get(name, name)


def yes_no(value: bool) -> str:
    """``oui`` or ``non``."""
    return "oui" if value else "non"


# -- each request to the provider (dispatcher.alerting.notifier) ---------------------------------

#: channel(kind), number, reference, outcome(…), sid, status, error, yes_no(retryable)
PROVIDER_RESULT: Final = (
    "Twilio, %s vers %s (réf. %s) : %s ; sid=%s statut=%s erreur=%s renvoi sûr=%s"
)
PROVIDER_BUG: Final = "erreur inattendue autour d'une requête au fournisseur : issue inconnue"

# -- the sends (dispatcher.alerting.delivery) ----------------------------------------------------

CLAIM_FAILED: Final = (
    "notifications en attente non réservées (base indisponible ?) : elles restent en attente"
    " pour le prochain passage"
)
#: channel(…), id, number
SEND_CRASHED: Final = (
    "%s n° %s vers %s : erreur interne pendant l'envoi ; laissé « en cours d'envoi », il sera"
    " rapproché avec le fournisseur à l'expiration de son bail"
)
#: id
NO_RESPONDER_LINK: Final = (
    "lien de prise en charge impossible à créer pour l'envoi n° %s : SMS envoyé sans lui"
)
#: channel(…), id, number, the error
OUTCOME_UNKNOWN: Final = (
    "%s n° %s vers %s : issue inconnue (%s) ; rapproché avec les relevés du fournisseur avant"
    " tout renvoi, l'escalade continue"
)
#: channel(…), id, number, the reason
NOT_WANTED: Final = "%s n° %s vers %s : %s"
#: channel(…), id, number, the error
FAILED: Final = (
    "%s n° %s vers %s en échec : %s ; l'escalade essaie l'autre canal de ce contact, et passe au"
    " palier suivant si plus personne du palier ne peut être joint"
)

# -- recovery after a crash (dispatcher.alerting.engine) -----------------------------------------

#: channel(…), id
REQUEUED_AT_RESTART: Final = (
    "%s n° %s attendait un nouvel essai quand le dispatcher s'est arrêté : remis en file"
)
#: channel(…), id
UNCERTAIN_AT_RESTART: Final = (
    "%s n° %s était en cours d'envoi quand le dispatcher s'est arrêté : issue inconnue,"
    " rapproché avec le fournisseur"
)
PROVIDER_BACK: Final = "le fournisseur SMS/voix répond de nouveau : les notifications en attente partent"

# -- the reconciliation (dispatcher.alerting.reconciler) -----------------------------------------

#: seconds to the next pass
RECONCILE_PASS_FAILED: Final = "passage de rapprochement en échec ; le prochain dans %.0f s"
#: the provider's error
RECONCILE_PAUSED: Final = (
    "rapprochement suspendu : fournisseur indisponible (%s) ; repris au prochain passage"
)
#: channel(…), id, old status, new status
ABANDONED: Final = "%s n° %s laissé par une instance disparue : statut %s → %s"
#: channel(…), id, number, sid, provider status, old status
ADOPTED: Final = (
    "%s n° %s vers %s trouvé chez le fournisseur (sid %s, statut %s) : repris tel quel (était %s)"
)
#: channel(…), id, number, old status, why
RESENT: Final = "%s n° %s vers %s renvoyé (était %s) : %s"
#: channel(…), id, number, old status, why
DROPPED: Final = "%s n° %s vers %s abandonné (était %s) : %s"
#: the sids
DISOWNED: Final = (
    "envois %s du fournisseur impossibles à attribuer à une seule notification : écartés"
)

# -- what Twilio calls back (dispatcher.alerting.webhooks, engine, smsreplies) ------------------

#: size limit, url
WEBHOOK_TOO_BIG: Final = "webhook Twilio refusé : corps de plus de %d octets (url=%s)"
#: url
WEBHOOK_UNSIGNED: Final = "webhook Twilio refusé : pas d'en-tête X-Twilio-Signature (url=%s)"
#: url
WEBHOOK_BAD_SIGNATURE: Final = (
    "webhook Twilio refusé : signature invalide pour url=%s (faux, ou jeton Twilio ou URL publique"
    " mal réglés)"
)
#: the form's fields
STATUS_INCOMPLETE: Final = "rappel de statut Twilio sans sid ou sans statut, ignoré : %s"
#: status, sid, reference
STATUS_UNKNOWN_SID: Final = "statut %s reçu pour un envoi inconnu (sid %s, réf. %s) : ignoré"
#: status, reference, sid
STATUS_OF_A_VISIT_TEXT: Final = "statut %s du SMS %s, hors alerte (sid %s)"
#: what (e.g. "visite v-1 : SMS de vérification"), outcome (:func:`outcome`), sid or error code
VISIT_TEXT_OUTCOME: Final = "%s : %s (%s)"
#: what, attempt number
VISIT_TEXT_RETRY: Final = "%s : fournisseur injoignable (tentative %d), nouvel essai"
#: what
VISIT_TEXT_CRASHED: Final = "%s : envoi en échec"
#: the text's reference (its task's name)
VISIT_TEXT_ABANDONED: Final = (
    "arrêt : SMS %s interrompu avant sa réponse ; repris au prochain démarrage s'il n'était pas parti"
)
#: what, reference
VISIT_TEXT_RESUMED: Final = "%s : repris après un arrêt (réf. %s)"
#: what, reference
VISIT_TEXT_EXPIRED: Final = "%s : non envoyé, sa fenêtre est passée pendant un arrêt (réf. %s)"
#: what, reference
VISIT_TEXT_FATE_UNKNOWN: Final = (
    "%s : une requête était partie avant un arrêt, sort inconnu : non renvoyée (réf. %s)"
)
#: what, reference
VISIT_TEXT_NOT_WANTED: Final = "%s : plus envoyé, la visite n'attend plus cette réponse (réf. %s)"
#: what, reference
VISIT_TEXT_WANTED_UNKNOWN: Final = (
    "%s : impossible de vérifier que la visite attend encore cette réponse (réf. %s) ; envoyé quand même"
)
#: what, reference
VISIT_TEXT_UNRECORDED: Final = "%s : état de l'envoi non enregistré en base (réf. %s) ; l'envoi continue"
#: call sid, reference
KEYPRESS_UNKNOWN_CALL: Final = "touche pressée pendant un appel inconnu (sid %s, réf. %s) : ignorée"
SMS_WITHOUT_SID: Final = "SMS reçu sans MessageSid : ignoré (un SMS signé par Twilio en a toujours un)"
#: MessageSid
SMS_REPLAYED: Final = "SMS reçu %s déjà traité : webhook rejoué, ignoré"
#: code, number, how many alerts
REPLY_CODE_AMBIGUOUS: Final = (
    "code de réponse %s de %s : %d alertes ouvertes le portent, aucune n'est choisie ;"
    " le contact est invité à prendre en charge par l'appel (touche 1) ou à appeler la console"
)
