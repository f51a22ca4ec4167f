"""The *fiche de signalement* as a PDF she downloads (fpdf2, no browser, no network).

What goes in: who, when (Europe/Paris), where, the SSJ convention, which
units were alerted and who took the alert, the time to acknowledge, and what
she wrote. What never goes in: contacts' phone numbers and technical events
("appel en cours", delivery statuses) — the PDF leaves her phone and may be
forwarded to the Ordre, the ONVS or a lawyer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from dispatcher.alerting.texts import PARIS
from dispatcher.web.practitioner.schemas import ReportForm

VIOLENCE_FR = {
    "verbale": "violence verbale (insultes)",
    "physique": "violence physique",
    "menaces": "menaces",
    "sexuelle": "violence à caractère sexuel",
    "vol_degradation": "vol, dégradation",
    "autre": "autre",
}


@dataclass(frozen=True)
class ReportFacts:
    """The facts of the alert the PDF restates (no numbers, no technical events)."""

    alert_id: str
    practitioner: str
    profession: str
    rpps: str
    received_at: datetime
    place: str
    place_kind: str
    convention: str | None
    units_alerted: tuple[str, ...]
    acknowledged_by: str | None
    time_to_ack_s: float | None
    outcome: str


def _latin1(text: str) -> str:
    """The PDF core fonts speak Latin-1: typographic quotes and dashes are folded to it."""
    folded = text.replace("’", "'").replace("–", "-").replace("—", "-").replace("œ", "oe").replace("…", "...")
    return folded.encode("latin-1", "replace").decode("latin-1")


def duration_words(seconds: float | None) -> str:
    if seconds is None:
        return "pas de prise en charge enregistrée"
    s = round(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


class _Fiche(FPDF):
    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font("Helvetica", "B", 12)
        self.cell(0, 8, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font("Helvetica", "", 10)

    def line_kv(self, key: str, value: str) -> None:
        self.set_font("Helvetica", "B", 10)
        self.cell(55, 6, _latin1(key))
        self.set_font("Helvetica", "", 10)
        self.multi_cell(0, 6, _latin1(value or "-"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def paragraph(self, text: str) -> None:
        self.multi_cell(0, 6, _latin1(text or "(non renseigné)"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def report_pdf(facts: ReportFacts, form: ReportForm) -> bytes:
    """The fiche as PDF bytes."""
    from zoneinfo import ZoneInfo

    pdf = _Fiche(format="A4")
    pdf.set_title(_latin1("Fiche de signalement Vigie"))
    pdf.set_author(_latin1(facts.practitioner))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, _latin1("Fiche de signalement - violence envers un professionnel de santé"))
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(0, 6, _latin1(f"Alerte Vigie {facts.alert_id}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    local = facts.received_at.astimezone(ZoneInfo(PARIS))
    pdf.heading("L'alerte")
    pdf.line_kv("Professionnel", f"{facts.practitioner} ({facts.profession}), RPPS {facts.rpps}")
    pdf.line_kv("Date et heure", local.strftime("%d/%m/%Y à %H:%M (heure de Paris)"))
    pdf.line_kv("Lieu", facts.place)
    pdf.line_kv("Type de lieu", facts.place_kind)
    pdf.line_kv("Convention SSJ", facts.convention or "aucune")
    pdf.line_kv("Forces alertées", ", ".join(facts.units_alerted) or "-")
    pdf.line_kv("Prise en charge par", facts.acknowledged_by or "-")
    pdf.line_kv("Délai de prise en charge", duration_words(facts.time_to_ack_s))
    pdf.line_kv("Issue", facts.outcome)

    pdf.heading("Les faits")
    pdf.paragraph(form.facts)
    pdf.heading("Type de violence")
    pdf.paragraph(", ".join(VIOLENCE_FR[v] for v in form.violence_types))
    pdf.heading("Conséquences")
    pdf.paragraph(form.consequences)
    if form.work_stoppage_days is not None:
        pdf.line_kv("Arrêt de travail", f"{form.work_stoppage_days} jour(s)")
    pdf.heading("Suites")
    pdf.line_kv("Plainte déposée", "oui" if form.complaint_filed else "non")
    if form.complaint_filed and form.complaint_place:
        pdf.line_kv("Auprès de", form.complaint_place)
    pdf.line_kv("Déclaration ONVS", "faite" if form.onvs_declared else "à faire")
    pdf.line_kv("Déclaration à l'Ordre", "faite" if form.ordre_declared else "à faire")
    pdf.ln(4)
    pdf.set_font("Helvetica", "I", 8)
    pdf.multi_cell(
        0,
        5,
        _latin1(
            "Document établi par la praticienne ou le praticien à partir de l'alerte Vigie. "
            "À joindre à la déclaration ONVS et à celle de votre conseil départemental de l'Ordre."
        ),
    )
    return bytes(pdf.output())
