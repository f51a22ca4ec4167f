"""Whose PIN cancels what, and PIN guessing: real argon2 hashes, a fake clock for the rate limit
(in memory, and in a real store shared by two instances)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.alerting.cancels import PinCheck, PinGuard, Verdict
from dispatcher.alerting.ratelimit import BucketPolicy
from dispatcher.directory.loader import hash_pin
from dispatcher.domain import Address, Device, DeviceKind, Practitioner, Site, SiteKind
from dispatcher.store.sqlite import SqliteStore

DR = Practitioner(
    id="dr-a",
    first_name="Anne",
    last_name="Roux",
    rpps="10001234567",
    phones=["+33639980150"],
    cancel_pin_hash=hash_pin("2468"),
    duress_pin_hash=hash_pin("1357"),
)
MMG = Site(
    id="mmg",
    kind=SiteKind.MMG,
    name="MMG",
    address=Address(label="240 Avenue de la Liberté, 34980 Saint-Gély-du-Fesc"),
    cancel_pin_hash=hash_pin("8642"),
    duress_pin_hash=hash_pin("9753"),
)
DESK = Device(id="desk", kind=DeviceKind.BUTTON, site_id="mmg")
POCKET = Device(id="pocket", kind=DeviceKind.POCKET, practitioner_id="dr-a", site_id="mmg")


@pytest.mark.parametrize(
    ("device", "practitioner", "pin", "verdict", "owner"),
    [
        (POCKET, DR, "2468", Verdict.NORMAL, "praticien"),
        (POCKET, DR, "1357", Verdict.DURESS, "praticien"),
        (POCKET, DR, "0000", Verdict.WRONG_PIN, None),
        (POCKET, DR, "8642", Verdict.WRONG_PIN, None),  # her own button: the staff PIN does not cancel it
        (DESK, None, "8642", Verdict.NORMAL, "site"),  # a site-only desk button: the staff PIN does
        (DESK, None, "9753", Verdict.DURESS, "site"),
        (DESK, None, "2468", Verdict.WRONG_PIN, None),
    ],
)
async def test_whose_pin_cancels_what(
    device: Device, practitioner: Practitioner | None, pin: str, verdict: Verdict, owner: str | None
) -> None:
    assert await PinCheck.for_device(device, practitioner, MMG).check(pin) == (verdict, owner)


async def test_a_device_nobody_set_a_pin_for_refuses_every_cancel() -> None:
    bare = MMG.model_copy(update={"cancel_pin_hash": None, "duress_pin_hash": None})
    assert await PinCheck.for_device(DESK, None, bare).check("8642") == (Verdict.NO_PIN, None)


async def test_pin_guessing_is_rate_limited_per_device_even_for_the_right_pin() -> None:
    now = [0.0]
    guard = PinGuard(BucketPolicy(burst=3, refill_per_s=1 / 60), clock=lambda: now[0])
    pins = PinCheck.for_device(POCKET, DR, None)
    for guess in ("0000", "1111", "2222"):
        assert await guard.check("pocket", pins, guess) == (Verdict.WRONG_PIN, None)
    # Out of tries: refused unchecked, whatever the PIN, and never read as a duress.
    assert await guard.check("pocket", pins, "2468") == (Verdict.RATE_LIMITED, None)
    assert await guard.check("pocket", pins, "1357") == (Verdict.RATE_LIMITED, None)
    assert await guard.check("other", pins, "2468") == (Verdict.NORMAL, "praticien")  # per device
    now[0] += 60
    assert await guard.check("pocket", pins, "2468") == (Verdict.NORMAL, "praticien")


async def test_two_instances_on_one_database_share_a_device_s_pin_tries(tmp_path: Path) -> None:
    """Issue 13: each instance had its own limiter, so N instances gave an attacker N times the tries."""
    db = tmp_path / "vigie.db"
    first, second = await SqliteStore.open(db), await SqliteStore.open(db)
    try:
        now = [datetime(2026, 11, 27, 9, 0, tzinfo=UTC)]
        policy = BucketPolicy(burst=3, refill_per_s=1 / 60)
        guards = [PinGuard(policy, store=s, wall_clock=lambda: now[0]) for s in (first, second)]
        pins = PinCheck.for_device(POCKET, DR, None)
        verdicts = [(await guards[n % 2].check("pocket", pins, "0000"))[0] for n in range(6)]
        assert verdicts == [Verdict.WRONG_PIN] * 3 + [Verdict.RATE_LIMITED] * 3  # 3 in all, not 3 each
        now[0] += timedelta(seconds=60)
        assert await guards[1].check("pocket", pins, "2468") == (Verdict.NORMAL, "praticien")
        assert await guards[0].check("pocket", pins, "2468") == (Verdict.RATE_LIMITED, None)
    finally:
        await first.close()
        await second.close()
