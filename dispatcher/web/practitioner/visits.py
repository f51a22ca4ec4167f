"""Her home visits: declare (with autocomplete), check out, extend; operators' open visits.

A visit is accepted only with a place: geocoded by the BAN, else placed in its
commune from the postcode and commune she gives (INSEE code), else refused
with a 422 naming the field, so the form can offer the commune route.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError

from dispatcher import audit
from dispatcher.directory.geocoding import GeocodingError
from dispatcher.domain import Address, HomeVisit, Id, LocationSource
from dispatcher.store.base import NotFound, VisitTimerRecord
from dispatcher.visits import timer as vt
from dispatcher.visits.place import UnroutableVisit, place_visit_address
from dispatcher.visits.runner import UNFINISHED, Actor
from dispatcher.web.api.deps import ClientIp, Ctx, CurrentUser, StaffUser, UserAccess, not_found, require
from dispatcher.web.auth import Role, User
from dispatcher.web.practitioner.schemas import MyVisit, OpenVisit, Suggestion, VisitDeclare, VisitExtend

router = APIRouter(
    prefix="/api/me", tags=["practitioner"], dependencies=[Depends(require(Role.PRACTITIONER))]
)
operators_router = APIRouter(prefix="/api/open-visits", tags=["visits"])

VISIT_READ = audit.VISIT_READ  # one action for every read of visits (operators' and admins')


def practitioner_of(user: User) -> str:
    """Her practitioner id (an account without one has nothing to see)."""
    if not user.practitioner_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="compte sans praticien associé")
    return user.practitioner_id


def _invalid(field: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": value}]
    )


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _mine(visit: HomeVisit | None, state: vt.VisitTimerState) -> MyVisit:
    address = visit.address if visit else Address(label="?")
    return MyVisit(
        id=state.visit_id,
        label=address.label,
        floor=address.floor,
        access_code=address.access_code,
        notes=address.details,
        dangerous=bool(visit and visit.dangerous),
        geocoded=address.point is not None,
        phase=state.public_phase,
        started_at=datetime.fromtimestamp(state.started_at, UTC),
        ends_at=datetime.fromtimestamp(state.ends_at, UTC),
        check_deadline=None if state.duress else _dt(state.check_deadline),
        closed_at=_dt(state.closed_at) if not state.duress else _dt(state.escalated_at),
    )


async def _place(ctx: Ctx, body: VisitDeclare) -> tuple[Address, str | None]:
    """The shared visit rule (:mod:`dispatcher.visits.place`, issue 10): geocoded, else routed
    by its commune, else a 422 naming the field. The postcode and commune she adds after a
    refusal are appended to the label, where that rule reads them."""
    address = Address(label=body.label, floor=body.floor, access_code=body.access_code, details=body.notes)
    field = "label"
    if body.postcode and body.commune:
        address = address.model_copy(update={"label": f"{body.label}, {body.postcode} {body.commune}"})
        field = "commune"
    try:
        return await place_visit_address(address, ctx.geocoder, ctx.cache.communes)
    except UnroutableVisit as exc:
        hint = "" if field == "commune" else " ; indiquez le code postal et la commune"
        raise _invalid(field, f"{exc.reason}{hint}", getattr(body, field)) from None


@router.post("/visits", response_model=MyVisit, status_code=status.HTTP_201_CREATED)
async def declare_visit(body: VisitDeclare, user: CurrentUser, ctx: Ctx, ip: ClientIp) -> MyVisit:
    """Declare a visit starting now; its timer checks on her at the end of ``duration_s``."""
    me = practitioner_of(user)
    limits = ctx.visits.settings
    if not limits.min_duration_s <= body.duration_s <= limits.max_duration_s:
        raise _invalid(
            "duration_s",
            f"durée entre {limits.min_duration_s // 60} min et {limits.max_duration_s // 3600} h",
            body.duration_s,
        )
    if me not in ctx.cache.current.practitioners:
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail="praticien inconnu")
    if await ctx.store.list_visit_timers(practitioner_id=me, phases=UNFINISHED, limit=1):
        # One visit at a time: an older one still ticking would check on her at the wrong moment.
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="une visite est déjà en cours : clôturez-la d'abord"
        )
    now = datetime.now(UTC)
    address, place_warning = await _place(ctx, body)
    visit = HomeVisit(
        id=f"visit-{secrets.token_hex(6)}",
        practitioner_id=me,
        address=address,
        starts_at=now,
        ends_at=datetime.fromtimestamp(now.timestamp() + body.duration_s, UTC),
        dangerous=body.dangerous,
    )
    state = await ctx.visits.declare(visit, body.duration_s, Actor(user, ip))
    await ctx.audit.record(
        user, audit.VISIT_CHANGE, target_kind="visit", target_id=visit.id, ip=ip, change="create"
    )
    # Declared anyway (refusing would leave her with no timer at all), but she is told.
    warnings = [w for w in (ctx.visits.device_warning(me), place_warning) if w]
    return _mine(visit, state).model_copy(update={"warnings": warnings})


async def _my_visits(ctx: Ctx, me: str, limit: int) -> list[MyVisit]:
    visits = {v.id: v for v in await ctx.store.list_visits(me)}
    records = await ctx.store.list_visit_timers(practitioner_id=me, limit=limit)
    return [_mine(visits.get(r.visit_id), vt.VisitTimerState.from_json(r.state)) for r in records]


@router.get("/visits", response_model=list[MyVisit])
async def list_my_visits(
    user: CurrentUser, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[MyVisit]:
    """Her visits, most recent first (open ones with their timer)."""
    return await _my_visits(ctx, practitioner_of(user), limit)


async def _own_timer(ctx: Ctx, user: User, visit_id: str) -> VisitTimerRecord:
    try:
        record = await ctx.store.get_visit_timer(visit_id)
    except NotFound:
        raise not_found("visite") from None
    if record.practitioner_id != practitioner_of(user):
        raise not_found("visite")
    return record


@router.post("/visits/{visit_id}/checkout", response_model=MyVisit)
async def check_out(visit_id: Id, user: CurrentUser, ctx: Ctx, ip: ClientIp) -> MyVisit:
    """'Je suis sortie' (also her answer to the check on the page)."""
    await _own_timer(ctx, user, visit_id)
    event = vt.CheckOut(now=time.time(), via="page")
    await ctx.visits.apply(visit_id, event, Actor(user, ip))
    return await _one(ctx, user, visit_id)


@router.post("/visits/{visit_id}/extend", response_model=MyVisit)
async def extend(visit_id: Id, body: VisitExtend, user: CurrentUser, ctx: Ctx, ip: ClientIp) -> MyVisit:
    """More time: the check moves ``by_s`` past the later of now and the expected end."""
    record = await _own_timer(ctx, user, visit_id)
    if body.by_s > ctx.visits.settings.max_extension_s:
        raise _invalid("by_s", "prolongation trop longue", body.by_s)
    if record.phase not in UNFINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="visite déjà clôturée")
    await ctx.visits.apply(visit_id, vt.Extend(now=time.time(), by_s=body.by_s), Actor(user, ip))
    return await _one(ctx, user, visit_id)


async def _one(ctx: Ctx, user: User, visit_id: str) -> MyVisit:
    record = await _own_timer(ctx, user, visit_id)
    visits = {v.id: v for v in await ctx.store.list_visits(record.practitioner_id)}
    return _mine(visits.get(visit_id), vt.VisitTimerState.from_json(record.state))


@router.get("/addresses/recent", response_model=list[MyVisit])
async def recent_addresses(user: CurrentUser, ctx: Ctx) -> list[MyVisit]:
    """Her last distinct addresses (with floor, door code, notes), one tap away."""
    seen: set[str] = set()
    out = []
    for visit in await _my_visits(ctx, practitioner_of(user), 50):
        if visit.label not in seen and visit.label != "?":
            seen.add(visit.label)
            out.append(visit)
    return out[:6]


@router.get("/geocode", response_model=list[Suggestion])
async def autocomplete(ctx: Ctx, q: Annotated[str, Query(min_length=3, max_length=200)]) -> list[Suggestion]:
    """Address suggestions through the dispatcher's geocoder (BAN)."""
    if ctx.geocoder is None:
        return []
    try:
        features = await ctx.geocoder.suggest(q, limit=5)
    except GeocodingError:
        return []
    out = []
    for f in features:
        props = f.get("properties") or {}
        out.append(
            Suggestion(
                label=str(props.get("label", "")),
                postcode=props.get("postcode"),
                city=props.get("city"),
                kind=props.get("type"),
            )
        )
    return [s for s in out if s.label]


# -- operators: open visits of their territory -----------------------------------------


def _operator_view(access: UserAccess, visit: HomeVisit, record: VisitTimerRecord, now: float) -> OpenVisit:
    state = vt.VisitTimerState.from_json(record.state)
    practitioner = access.snapshot.practitioners.get(record.practitioner_id)
    return OpenVisit(
        id=record.visit_id,
        practitioner_id=record.practitioner_id,
        practitioner_name=practitioner.display_name if practitioner else record.practitioner_id,
        label=visit.address.label,
        dangerous=visit.dangerous,
        phase=state.phase,  # the truth, duress included: operators must know
        started_at=datetime.fromtimestamp(state.started_at, UTC),
        ends_at=datetime.fromtimestamp(state.ends_at, UTC),
        overdue=state.overdue(now),
        check_deadline=_dt(state.check_deadline),
        alert_id=record.alert_id,
        extensions=state.extensions,
        finished_at=_dt(state.closed_at if state.phase == "closed" else state.escalated_at),
        closed_via=state.closed_via,
    )


@operators_router.get("", response_model=list[OpenVisit])
async def open_visits(
    staff: StaffUser,
    access: UserAccess,
    ctx: Ctx,
    ip: ClientIp,
    recent_h: Annotated[float, Query(ge=0, le=24, description="Also visits finished this recently")] = 0,
) -> list[OpenVisit]:
    """Open visits in the operator's territory (all for an admin), overdue ones first.

    With ``recent_h``, also those checked out or escalated within that many
    hours (the console shows check-outs and escalations as they happen).
    """
    now = time.time()
    visits = {v.id: v for v in await ctx.store.list_visits()}
    records = await ctx.store.list_visit_timers(phases=UNFINISHED, limit=500)
    if recent_h:
        finished = await ctx.store.list_visit_timers(phases=("closed", "escalated"), limit=200)
        records += [r for r in finished if r.state.get("closed_at") or r.state.get("escalated_at")]
    out = []
    for record in records:
        visit = visits.get(record.visit_id)
        if visit is None or not (
            access.is_admin
            or access.address_convention(visit.address, LocationSource.HOME_VISIT) in access.convention_ids
        ):
            continue
        view = _operator_view(access, visit, record, now)
        if view.finished_at is None or view.finished_at.timestamp() >= now - recent_h * 3600:
            out.append(view)
    await ctx.audit.record(staff, VISIT_READ, target_kind="visit", ip=ip, count=len(out))
    out.sort(key=lambda v: (v.finished_at is not None, not v.overdue, v.ends_at))
    return out
