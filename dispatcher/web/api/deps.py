"""What every router depends on: the dispatcher parts, the current user, role checks.

The parts live on ``app.state.api`` (set by :func:`dispatcher.web.app.create_app`);
nothing here is built at import time except stateless FastAPI dependency
descriptors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Protocol

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from dispatcher.audit import Auditor
from dispatcher.directory.snapshot import DirectoryCache
from dispatcher.events import EventBus
from dispatcher.settings import DispatcherSettings
from dispatcher.store.base import Store
from dispatcher.web.api.access import Access
from dispatcher.web.auth import SESSION_COOKIE, Authenticator, Role, User

if TYPE_CHECKING:
    from dispatcher.alerting.engine import Engine
    from dispatcher.directory.geocoding import AddressGeocoder
    from dispatcher.fleet.broker_control import BrokerControl
    from dispatcher.visits.runner import VisitTimers


class DispatcherParts(Protocol):
    """What the API needs of a running dispatcher (:class:`dispatcher.service.Dispatcher` fits)."""

    settings: DispatcherSettings
    store: Store
    cache: DirectoryCache
    bus: EventBus
    engine: Engine
    visits: VisitTimers
    control: BrokerControl


@dataclass
class ApiContext:
    """The running dispatcher's parts the routers use, plus auth and audit."""

    settings: DispatcherSettings
    store: Store
    cache: DirectoryCache
    bus: EventBus
    engine: Engine
    auth: Authenticator
    audit: Auditor
    visits: VisitTimers
    control: BrokerControl  # dynamic-security commands to the broker (revocation)
    geocoder: AddressGeocoder | None = None

    @classmethod
    def of(cls, parts: DispatcherParts, geocoder: AddressGeocoder | None = None) -> ApiContext:
        """Wrap a running dispatcher; ``geocoder`` completes home-visit addresses (None: as given)."""
        return cls(
            settings=parts.settings,
            store=parts.store,
            cache=parts.cache,
            bus=parts.bus,
            engine=parts.engine,
            auth=Authenticator(parts.store, parts.settings.api),
            audit=Auditor(parts.store),
            visits=parts.visits,
            control=parts.control,
            geocoder=geocoder,
        )


def api_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.api
    return ctx


Ctx = Annotated[ApiContext, Depends(api_context)]

_bearer = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


def client_ip(request: Request) -> str:
    """The peer address (the dispatcher is behind no proxy by default: X-Forwarded-For is ignored)."""
    return request.client.host if request.client else "unknown"


ClientIp = Annotated[str, Depends(client_ip)]


def session_token(request: Request, bearer: Annotated[str | None, Depends(_bearer)]) -> str | None:
    """A bearer token (API clients) or the session cookie (console)."""
    return bearer or request.cookies.get(SESSION_COOKIE)


def unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="authentification requise",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def current_user(ctx: Ctx, token: Annotated[str | None, Depends(session_token)]) -> User:
    """The authenticated user, else 401."""
    if not token:
        raise unauthorized()
    user = await ctx.auth.user_for(token)
    if user is None:
        raise unauthorized()
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require(*roles: Role) -> Callable[[User], Awaitable[User]]:
    """A dependency admitting only ``roles`` (403 for the others)."""

    async def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="rôle insuffisant pour cette opération")
        return user

    return check


AdminUser = Annotated[User, Depends(require(Role.ADMIN))]
StaffUser = Annotated[User, Depends(require(Role.ADMIN, Role.OPERATOR))]


async def user_access(user: CurrentUser, ctx: Ctx) -> Access:
    """The user's view of the directory as it is now."""
    return Access(user, ctx.cache.current)


UserAccess = Annotated[Access, Depends(user_access)]


def not_found(what: str) -> HTTPException:
    """The same 404 for 'does not exist' and 'not yours': existence is never leaked."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} introuvable")
