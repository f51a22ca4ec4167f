"""Login (cookie or OAuth2 bearer token), logout and the current user."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from dispatcher import audit
from dispatcher.events import ACCOUNT_EVENT
from dispatcher.web.api.deps import ClientIp, Ctx, CurrentUser, session_token
from dispatcher.web.api.schemas import LoginRequest, TokenResponse, UserPublic
from dispatcher.web.auth import SESSION_COOKIE, InvalidCredentials, LoginThrottled, Session, User

router = APIRouter(prefix="/api/auth", tags=["auth"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Wrong username or password"},
    429: {"description": "Too many failed logins for this user from this address"},
}


def user_public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        practitioner_id=user.practitioner_id,
        conventions=list(user.conventions),
    )


async def _login(ctx: Ctx, username: str, password: str, ip: str) -> Session:
    try:
        session = await ctx.auth.login(username, password, ip)
    except LoginThrottled as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="trop d'échecs de connexion : réessayez plus tard",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    except InvalidCredentials:
        await ctx.audit.record(None, audit.LOGIN_FAILED, target_kind="user", target_id=username, ip=ip)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail="identifiant ou mot de passe incorrect"
        ) from None
    await ctx.audit.record(session.user, audit.LOGIN, ip=ip)
    return session


@router.post("/login", response_model=UserPublic, responses=_ERRORS)
async def login(body: LoginRequest, ctx: Ctx, ip: ClientIp, response: Response) -> UserPublic:
    """Console login: sets an HttpOnly, SameSite=Strict session cookie."""
    session = await _login(ctx, body.username, body.password, ip)
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int(ctx.settings.api.session_ttl_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=ctx.settings.api.cookie_secure,
        path="/",
    )
    return user_public(session.user)


@router.post("/token", response_model=TokenResponse, responses=_ERRORS)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], ctx: Ctx, ip: ClientIp
) -> TokenResponse:
    """OAuth2 password flow for API clients: returns a bearer token."""
    session = await _login(ctx, form.username, form.password, ip)
    return TokenResponse(access_token=session.token, expires_at=session.expires_at)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    user: CurrentUser,
    ctx: Ctx,
    ip: ClientIp,
    token: Annotated[str | None, Depends(session_token)],
    response: Response,
) -> None:
    """End the session (cookie or bearer token) server-side."""
    if token:
        await ctx.auth.logout(token)
    ctx.bus.publish(ACCOUNT_EVENT, user_id=user.id)  # this session's live feeds close now
    await ctx.audit.record(user, audit.LOGOUT, ip=ip)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


@router.get("/me", response_model=UserPublic)
async def me(user: CurrentUser) -> UserPublic:
    """Who is logged in."""
    return user_public(user)
