"""After the incident: the practitioner's *fiche de signalement* and anonymised statistics.

:func:`fiche_html` renders a printable, pre-filled HTML form (print CSS, no
external asset) that the practitioner completes and sends to her Ordre
départemental / the ONVS, or brings to a complaint. :func:`statistics` counts
alerts per convention, month and type of place with acknowledgement times —
no names, no addresses, no device ids.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import statistics as stats
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from dispatcher.domain import Convention
from dispatcher.store.base import AlertFacts
from dispatcher.web.api.schemas import AlertDetail, StatsRow

REPORTABLE_STATES = frozenset({"resolved"})
# The fiche shows what people typed (notes, addresses): even if escaping ever failed, nothing
# may run or load. The one script is the print button's inline handler, allowed by its hash.
PRINT_HANDLER = "window.print()"
_PRINT_HASH = base64.b64encode(hashlib.sha256(PRINT_HANDLER.encode()).digest()).decode()
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:;"
    f" script-src 'unsafe-hashes' 'sha256-{_PRINT_HASH}';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PARIS = ZoneInfo("Europe/Paris")
_PLACE = {
    "cabinet": "Cabinet médical",
    "mmg": "Maison médicale de garde",
    "centre_sante": "Centre de santé",
    "other": "Autre lieu d'exercice",
    "home_visit": "Domicile du patient (visite)",
    "gps": "Position GPS (lieu non déclaré)",
    "last_known": "Dernière position connue",
    "unknown": "Inconnu",
}

_CSS = """
body{font:11pt/1.4 system-ui,sans-serif;max-width:48rem;margin:1.5rem auto;color:#111;padding:0 1rem}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.05rem;border-bottom:1px solid #999;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #bbb;padding:.25rem .4rem;text-align:left;
vertical-align:top}th{width:30%;background:#f3f3f3}.fill{min-height:5rem;border:1px dashed #888;padding:.4rem}
.muted{color:#555;font-size:.9rem}.noprint{margin:1rem 0}
@media print{.noprint{display:none}body{margin:0;max-width:none}h2{break-after:avoid}tr{break-inside:avoid}}
"""


def _local(dt: datetime) -> str:
    return dt.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M:%S")


def place_type(source: str | None, site_kind: str | None) -> str:
    """The kind of place of an alert, as counted in statistics."""
    if source == "home_visit":
        return "home_visit"
    if source == "site" and site_kind:
        return site_kind
    return source or "unknown"


def _rows(pairs: Iterable[tuple[str, str | None]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td>{escape(v or '—')}</td></tr>" for k, v in pairs)


def fiche_html(alert: AlertDetail) -> str:
    """The pre-filled fiche for one closed alert (the caller checks access and audits)."""
    p, loc = alert.practitioner, alert.location
    address = loc.address if loc else None
    where = [
        ("Lieu", loc.description if loc else None),
        ("Type de lieu", _PLACE.get(place_type(loc.source if loc else None, alert.site_kind), "Inconnu")),
        ("Adresse", address.label if address else None),
        ("Étage / accès", ", ".join(x for x in (address.floor, address.details) if x) if address else None),
        ("Coordonnées", f"{loc.point.lat:.5f}, {loc.point.lon:.5f}" if loc and loc.point else None),
        ("Commune (INSEE)", loc.insee if loc else None),
    ]
    responders = sorted({n.contact_name for n in alert.notifications if n.purpose == "alert"})
    timeline = "".join(
        f"<tr><td>{escape(_local(e.at))}</td><td>{escape(e.text)}</td></tr>" for e in alert.timeline
    )
    return f"""<!doctype html><html lang="fr"><head><meta charset="utf-8">
<title>Fiche de signalement — alerte du {escape(_local(alert.received_at))}</title><style>{
        _CSS
    }</style></head>
<body><p class="noprint"><button onclick="{PRINT_HANDLER}">Imprimer / enregistrer en PDF</button></p>
<h1>Fiche de signalement d'un incident de violence</h1>
<p class="muted">Pré-remplie par Vigie à partir de l'alerte {escape(alert.id)}. À compléter, signer et
adresser au conseil départemental de l'Ordre et/ou à l'Observatoire national des violences en milieu de
santé (ONVS) ; peut accompagner un dépôt de plainte.</p>
<h2>Victime déclarante</h2><table>{
        _rows(
            [
                ("Nom", p.display_name if p else None),
                ("Profession", p.profession if p else None),
                ("RPPS", p.rpps if p else None),
                ("Téléphone", ", ".join(p.phones) if p else None),
            ]
        )
    }</table>
<h2>Date, heure et lieu</h2><table>{_rows([("Alerte déclenchée le", _local(alert.received_at)), *where])}
</table><h2>Intervention</h2><table>{
        _rows(
            [
                ("Convention SSJ", alert.convention_name),
                ("Prise en charge par", alert.acked_by),
                ("Intervenants alertés", ", ".join(responders) or None),
                ("Clôturée par", alert.closed_by),
                ("Alerte sous contrainte", "oui" if alert.duress else "non"),
            ]
        )
    }</table>
<h2>Chronologie</h2><table><tr><th>Heure</th><th>Événement</th></tr>{timeline}</table>
<h2>Description des faits (à compléter)</h2><div class="fill"></div>
<h2>Type de violence (à cocher)</h2><p>☐ Insultes, menaces ☐ Violence physique ☐ Menace avec arme
☐ Dégradation ☐ Vol ☐ Autre : ……………</p>
<h2>Suites</h2><p>☐ Plainte déposée le …… à …… ☐ Main courante ☐ Arrêt de travail (ITT : …… jours)
☐ Signalement ONVS ☐ Déclaration à l'Ordre</p>
<p>Fait à …………………… le ……………………  Signature :</p></body></html>"""


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(stats.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1], 1)


def statistics(alerts: Iterable[AlertFacts], conventions: Sequence[Convention]) -> list[StatsRow]:
    """Anonymised counts per (convention, month, type of place); real alerts only, not tests."""
    departements = {c.name: c.departement for c in conventions}
    cells: dict[tuple[str, str, str], list[AlertFacts]] = defaultdict(list)
    for a in alerts:
        if a.kind != "alert":
            continue
        key = (
            a.convention_name or "(aucune convention)",
            a.received_at.astimezone(PARIS).strftime("%Y-%m"),
            place_type(a.location_source, a.site_kind),
        )
        cells[key].append(a)
    rows = []
    for (convention, month, place), cell in sorted(cells.items()):
        delays = [
            (a.acknowledged_at - a.received_at).total_seconds() for a in cell if a.acknowledged_at is not None
        ]
        rows.append(
            StatsRow(
                convention=convention,
                departement=departements.get(convention),
                month=month,
                place_type=place,
                alerts=len(cell),
                acknowledged=len(delays),
                false_alarms=sum(a.state == "false_alarm" for a in cell),
                cancelled=sum(a.state == "cancelled" for a in cell),
                duress=sum(a.duress for a in cell),
                median_ack_s=round(stats.median(delays), 1) if delays else None,
                p90_ack_s=_quantile(delays, 0.9),
            )
        )
    return rows


COUNT_COLUMNS = ("alerts", "acknowledged", "false_alarms", "cancelled", "duress")


def suppress_small_counts(rows: Sequence[StatsRow], threshold: int) -> list[StatsRow]:
    """Counts from 1 to ``threshold - 1`` become ``"<threshold"``, so that no cell singles anyone out.

    A cell with fewer alerts than the threshold also loses its acknowledgement
    times (a median of two delays is each person's delay). Zero stays zero: it
    says nothing about anyone. ``threshold <= 1`` turns suppression off.
    """
    if threshold <= 1:
        return list(rows)
    hidden = f"<{threshold}"

    def shown(value: int | str) -> int | str:
        return hidden if isinstance(value, int) and 0 < value < threshold else value

    out = []
    for row in rows:
        update: dict[str, object] = {c: shown(getattr(row, c)) for c in COUNT_COLUMNS}
        if update["alerts"] == hidden:
            update |= {"median_ack_s": None, "p90_ack_s": None}
        out.append(row.model_copy(update=update))
    return out


def statistics_csv(rows: Sequence[BaseModel], model: type[BaseModel] = StatsRow) -> str:
    """CSV with a header line (``model``'s fields), one row per cell or total."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(model.model_fields))
    writer.writeheader()
    for row in rows:
        writer.writerow(row.model_dump())
    return out.getvalue()
