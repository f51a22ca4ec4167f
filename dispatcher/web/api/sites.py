"""Sites (cabinets, MMG): admins write; operators read those of their territory."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, HTTPException, status

from dispatcher import audit
from dispatcher.domain import Id, Site
from dispatcher.web.api.deps import AdminUser, ClientIp, Ctx, UserAccess, not_found
from dispatcher.web.api.entry_yaml import add_yaml_routes
from dispatcher.web.api.schemas import SiteCreate, SiteWrite

#: Never sent out: a 4-digit PIN is found from its hash in seconds.
_PIN_HASHES = {"cancel_pin_hash", "duress_pin_hash"}
router = APIRouter(prefix="/api/sites", tags=["sites"])


@router.get("", response_model=list[Site], response_model_exclude=_PIN_HASHES)
async def list_sites(access: UserAccess, ctx: Ctx) -> list[Site]:
    return [s for s in await ctx.store.list_sites() if access.sees_site(s)]


@router.get("/{site_id}", response_model=Site, response_model_exclude=_PIN_HASHES)
async def get_site(site_id: Id, access: UserAccess) -> Site:
    site = access.snapshot.sites.get(site_id)
    if site is None or not access.sees_site(site):
        raise not_found("site")
    return site


async def _save(ctx: Ctx, site: Site) -> Site:
    if ctx.geocoder is not None and site.address.point is None:
        from dispatcher.directory.geocoding import GeocodingError

        try:
            site = site.model_copy(update={"address": await ctx.geocoder.geocode(site.address)})
        except GeocodingError as exc:
            raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail=f"adresse : {exc}") from None
    await ctx.store.upsert_site(site)
    await ctx.cache.refresh()
    return site


@router.post("", response_model=Site, response_model_exclude=_PIN_HASHES, status_code=status.HTTP_201_CREATED)
async def create_site(body: SiteCreate, admin: AdminUser, ctx: Ctx, ip: ClientIp) -> Site:
    """Create a site; its address is geocoded when no point is given (422 if not found)."""
    if body.id in ctx.cache.current.sites:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="ce site existe déjà")
    site = await _save(
        ctx, Site(id=body.id, kind=body.kind, name=body.name, address=body.address.to_address())
    )
    await ctx.audit.record(
        admin, audit.CONFIG_CHANGE, target_kind="site", target_id=site.id, ip=ip, change="create"
    )
    return site


@router.put("/{site_id}", response_model=Site, response_model_exclude=_PIN_HASHES)
async def update_site(site_id: Id, body: SiteWrite, admin: AdminUser, ctx: Ctx, ip: ClientIp) -> Site:
    if site_id not in ctx.cache.current.sites:
        raise not_found("site")
    current = ctx.cache.current.sites[site_id]
    pins = {"cancel_pin_hash": current.cancel_pin_hash, "duress_pin_hash": current.duress_pin_hash}
    edited = Site(id=site_id, kind=body.kind, name=body.name, address=body.address.to_address(), **pins)
    site = await _save(ctx, edited)  # the staff PINs are set from the directory file, kept here
    await ctx.audit.record(
        admin, audit.CONFIG_CHANGE, target_kind="site", target_id=site_id, ip=ip, change="update"
    )
    return site


add_yaml_routes(router, "site", "site", lambda snapshot, sid: snapshot.sites.get(sid), _save)
