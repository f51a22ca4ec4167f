"""Accounts, passwords, sessions and login throttling.

Passwords are argon2id hashes (``argon2-cffi`` defaults). A login issues an
opaque random session token: sent as an HttpOnly cookie to the console, or
returned as an OAuth2 bearer token to API clients. Only its SHA-256 digest is
stored, so sessions can be revoked (logout, disabled account) and a copy of
the database cannot be used to impersonate anyone.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict

from dispatcher.hashing import Busy, HashPool, InflightGate
from dispatcher.settings import ApiSettings
from dispatcher.store.base import AccessStore, UserRecord

SESSION_COOKIE = "vigie_session"


class Role(StrEnum):
    """What an account may do; enforced server-side on every request."""

    ADMIN = "admin"  # everything, in every territory; the audit log
    OPERATOR = "operator"  # alerts, devices and statistics of its conventions only
    PRACTITIONER = "practitioner"  # her own devices, visits, alerts and reports


class User(BaseModel):
    """The authenticated account of a request (never carries the password hash)."""

    model_config = ConfigDict(frozen=True)

    id: int
    username: str
    display_name: str
    role: Role
    practitioner_id: str | None = None
    conventions: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, record: UserRecord) -> User:
        return cls(
            id=record.id,
            username=record.username,
            display_name=record.display_name,
            role=Role(record.role),
            practitioner_id=record.practitioner_id,
            conventions=record.conventions,
        )


def hash_password(password: str) -> str:
    """argon2id hash of a password (blocking, ~0.1 s: use a thread from async code)."""
    return PasswordHasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False on mismatch or malformed hash (blocking)."""
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """What the store keeps of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


class LoginThrottled(Exception):
    """Too many failed logins for this user from this address: HTTP 429."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


# A global ceiling on password checks in flight, per hashing thread: beyond it, 429 at once.
INFLIGHT_PER_THREAD = 8
BUSY_RETRY_AFTER_S = 2


class InvalidCredentials(Exception):
    """Unknown user, wrong password or disabled account (indistinguishable on purpose)."""


@dataclass(frozen=True, slots=True)
class Session:
    """A successful login: the token to hand to the client, once."""

    user: User
    token: str
    expires_at: datetime


class Authenticator:
    """Logs users in and out and resolves session tokens, against the store."""

    def __init__(self, store: AccessStore, settings: ApiSettings) -> None:
        self._store = store
        self._settings = settings
        self._dummy_hash: str | None = None
        self._hashing = HashPool(settings.login_hash_threads, "vigie-login")
        self._gate = InflightGate(
            settings.login_inflight_per_key, settings.login_hash_threads * INFLIGHT_PER_THREAD
        )

    async def login(self, username: str, password: str, ip: str) -> Session:
        """Check the password; raises LoginThrottled or InvalidCredentials.

        At most ``login_inflight_per_key`` checks run at once per username and
        per address: the others are throttled unchecked, so that a burst of
        concurrent guesses cannot all pass the failure count before any failure
        is recorded.
        """
        try:
            with self._gate.enter(f"user:{username.casefold()}", f"ip:{ip}"):
                return await self._login(username, password, ip)
        except Busy:
            raise LoginThrottled(BUSY_RETRY_AFTER_S) from None

    async def _login(self, username: str, password: str, ip: str) -> Session:
        now = datetime.now(UTC)
        since = now - timedelta(seconds=self._settings.login_window_s)
        failures = await self._store.count_login_failures(username, ip, since)
        if failures >= self._settings.login_max_failures:
            raise LoginThrottled(self._settings.login_window_s)
        record = await self._store.get_user_by_name(username)
        # Hash even for unknown users so that timing does not reveal which accounts exist.
        stored = record.password_hash if record else await self._dummy()
        ok = await self._hashing.run(verify_password, stored, password)
        if not ok or record is None or record.disabled:
            await self._store.record_login_failure(username, ip, now)
            raise InvalidCredentials(username)
        await self._store.clear_login_failures(username, ip)
        token = secrets.token_urlsafe(32)
        expires = now + timedelta(hours=self._settings.session_ttl_hours)
        await self._store.create_session(token_digest(token), record.id, expires)
        return Session(User.from_record(record), token, expires)

    async def user_for(self, token: str) -> User | None:
        """The user of a valid session token, else None."""
        record = await self._store.session_user(token_digest(token), datetime.now(UTC))
        return None if record is None else User.from_record(record)

    async def logout(self, token: str) -> None:
        await self._store.delete_session(token_digest(token))

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hashing.run(hash_password, secrets.token_urlsafe(16))
        return self._dummy_hash
