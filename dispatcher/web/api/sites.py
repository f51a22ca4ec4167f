"""Sites (cabinets, MMG): admins write; operators read those of their territory."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, HTTPException, Response, status

from dispatcher import audit
from dispatcher.directory.snapshot import Listed
from dispatcher.domain import Id, Site
from dispatcher.web.api.deps import AdminUser, ClientIp, Ctx, UserAccess, not_found
from dispatcher.web.api.entry_yaml import add_yaml_routes
from dispatcher.web.api.listing import PAGE, Limit, Search, listed, page
from dispatcher.web.api.schemas import SiteCreate, SitePublic, SiteWrite

router = APIRouter(prefix="/api/sites", tags=["sites"])


@router.get("", response_model=list[SitePublic])
async def list_sites(
    access: UserAccess, response: Response, q: Search = None, limit: Limit = PAGE
) -> list[SitePublic]:
    """The visible sites by id; with ``q``, those whose name, id or address hold its words;
    ``limit`` at most, how many in all in ``X-Total-Count`` (:mod:`dispatcher.web.api.listing`)."""
    rows: Listed[Site] = await listed(access.snapshot, "sites_listed")
    return [SitePublic.of(s) for s in await page(rows, access.sees_site, q=q, limit=limit, response=response)]


@router.get("/{site_id}", response_model=SitePublic)
async def get_site(site_id: Id, access: UserAccess) -> SitePublic:
    site = access.snapshot.sites.get(site_id)
    if site is None or not access.sees_site(site):
        raise not_found("site")
    return SitePublic.of(site)


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


@router.post("", response_model=SitePublic, status_code=status.HTTP_201_CREATED)
async def create_site(body: SiteCreate, admin: AdminUser, ctx: Ctx, ip: ClientIp) -> SitePublic:
    """Create a site; its address is geocoded when no point is given (422 if not found)."""
    if body.id in ctx.cache.current.sites:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="ce site existe déjà")
    site = await _save(
        ctx, Site(id=body.id, kind=body.kind, name=body.name, address=body.address.to_address())
    )
    await ctx.audit.record(
        admin, audit.CONFIG_CHANGE, target_kind="site", target_id=site.id, ip=ip, change="create"
    )
    return SitePublic.of(site)


@router.put("/{site_id}", response_model=SitePublic)
async def update_site(site_id: Id, body: SiteWrite, admin: AdminUser, ctx: Ctx, ip: ClientIp) -> SitePublic:
    if site_id not in ctx.cache.current.sites:
        raise not_found("site")
    current = ctx.cache.current.sites[site_id]
    pins = {"cancel_pin_hash": current.cancel_pin_hash, "duress_pin_hash": current.duress_pin_hash}
    edited = Site(id=site_id, kind=body.kind, name=body.name, address=body.address.to_address(), **pins)
    site = await _save(ctx, edited)  # the staff PINs are set from the directory file, kept here
    await ctx.audit.record(
        admin, audit.CONFIG_CHANGE, target_kind="site", target_id=site_id, ip=ip, change="update"
    )
    return SitePublic.of(site)


add_yaml_routes(router, "site", "site", lambda snapshot, sid: snapshot.sites.get(sid), _save)
