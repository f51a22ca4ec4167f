"""Request and response bodies of the practitioner's routes (French UI, ids in English)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Phase = Literal["open", "checking", "closed", "escalated"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VisitDeclare(_In):
    """A visit declared from her phone; ``duration_s`` is checked against the settings."""

    label: Annotated[str, Field(min_length=3, max_length=300, description="Address as chosen or typed")]
    floor: Annotated[str, Field(max_length=100)] | None = None
    access_code: Annotated[str, Field(max_length=50)] | None = None
    notes: Annotated[str, Field(max_length=300)] | None = None
    dangerous: bool = False
    duration_s: int = Field(description="Expected duration in seconds (15/30/45/60 min or custom)")
    postcode: Annotated[str, Field(pattern=r"^[0-9]{5}$")] | None = Field(
        default=None, description="With 'commune', when the address itself cannot be placed"
    )
    commune: Annotated[str, Field(min_length=2, max_length=100)] | None = None


class VisitExtend(_In):
    by_s: int = Field(gt=0, description="Seconds added after the later of now and the expected end")


class MyVisit(BaseModel):
    """A visit as her page shows it: a duress answer looks exactly like a check-out."""

    id: str
    label: str
    floor: str | None
    access_code: str | None
    notes: str | None
    dangerous: bool
    geocoded: bool
    phase: Phase
    started_at: datetime
    ends_at: datetime
    check_deadline: datetime | None
    closed_at: datetime | None
    warnings: list[str] = Field(
        default=[], description="On a declaration: French warnings to show her (no device, no coordinates)"
    )


class OpenVisit(BaseModel):
    """An open visit as operators see it in the console."""

    id: str
    practitioner_id: str
    practitioner_name: str
    label: str
    dangerous: bool
    phase: Phase
    started_at: datetime
    ends_at: datetime
    overdue: bool
    check_deadline: datetime | None
    alert_id: str | None
    extensions: int = 0
    finished_at: datetime | None = Field(default=None, description="Checked out, or escalated")
    closed_via: str | None = Field(default=None, description="page or sms, for a check-out")


class Suggestion(BaseModel):
    label: str
    postcode: str | None = None
    city: str | None = None
    kind: str | None = None


class MyDevice(BaseModel):
    id: str
    label: str
    kind: str
    online: bool | None = Field(description="None: never heard from")
    battery_pct: int | None
    last_seen_at: datetime | None
    last_test_at: datetime | None
    last_test_alert: str | None


class TestStarted(BaseModel):
    alert_id: str


class TestResult(BaseModel):
    alert_id: str
    received_at: datetime
    state: str
    sms_status: str | None = Field(description="The test SMS to her phone: pending, sent, delivered...")
    device_feedback: bool = Field(description="The 'acknowledged' downlink was sent to the device")
    device_online: bool | None
    done: bool


class MyAlert(BaseModel):
    """Her alert as she may see it (a duress is a cancel until an operator resolved it)."""

    id: str
    received_at: datetime
    state: str
    reason: str | None
    place: str | None
    acknowledged_by: str | None
    time_to_ack_s: float | None
    report_available: bool
    report_saved: bool


ViolenceKind = Literal["verbale", "physique", "menaces", "sexuelle", "vol_degradation", "autre"]


class ReportForm(_In):
    """The *fiche de signalement* she fills after the incident."""

    facts: Annotated[str, Field(max_length=5000)] = ""
    violence_types: list[ViolenceKind] = Field(default_factory=list)
    consequences: Annotated[str, Field(max_length=2000)] = ""
    work_stoppage_days: Annotated[int, Field(ge=0, le=365)] | None = None
    complaint_filed: bool = False
    complaint_place: Annotated[str, Field(max_length=200)] = ""
    onvs_declared: bool = False
    ordre_declared: bool = False


class ReportView(BaseModel):
    alert_id: str
    form: ReportForm
    saved_at: datetime | None
