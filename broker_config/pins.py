"""The cancel and duress PINs of a device: generated or checked at provisioning, stored hashed.

The PINs belong to the person (or, for a desk button bound only to a site,
to the site's staff), not to one device: the dispatcher verifies a cancel
against the argon2 hashes on the practitioner (or site) record
(``dispatcher/alerting/engine.py``). So provisioning:

* sets the hashes when the owner has none yet (the PINs chosen now become hers);
* otherwise requires the PINs given to match the registered ones, because a
  device sending another PIN would have every cancel refused, or worse, a
  cancel PIN that is in fact her duress PIN;
* writes the clear PINs only into the device's own ``device.toml`` (the device
  must send them), never on the server.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

GENERATED_DIGITS = 6


class PinError(ValueError):
    """PINs that cannot be used; the message is meant for the installer."""


@dataclass(frozen=True)
class Pins:
    """A cancel PIN and, unless the duress gesture is not offered, a duress PIN."""

    cancel: str = field(repr=False)
    duress: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_format(self.cancel, CANCEL)
        if self.duress is not None:
            check_format(self.duress, DURESS)
            if self.duress == self.cancel:
                raise PinError("le code PIN de contrainte doit différer du code PIN d'annulation")


CANCEL = "code PIN d'annulation"
DURESS = "code PIN de contrainte"


def check_format(pin: str, what: str) -> None:
    """4 to 8 ASCII digits (the wire schema's rule)."""
    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 8):
        raise PinError(f"le {what} doit compter 4 à 8 chiffres")


def generate() -> Pins:
    """Two random, distinct 6-digit PINs (secrets, not random)."""
    cancel = _random_pin()
    duress = _random_pin()
    while duress == cancel:  # one chance in a million: draw again
        duress = _random_pin()
    return Pins(cancel, duress)


def _random_pin() -> str:
    return f"{secrets.randbelow(10**GENERATED_DIGITS):0{GENERATED_DIGITS}d}"


def owns_pins(record: Any) -> bool:
    """True when the directory record (practitioner, site) carries PIN hashes."""
    return hasattr(record, "cancel_pin_hash") and hasattr(record, "duress_pin_hash")


def _matches(hashed: str, pin: str) -> bool:
    try:
        return PasswordHasher().verify(hashed, pin)
    except (VerificationError, InvalidHashError):
        return False


def check_against(record: Any, pins: Pins, who: str) -> None:
    """Refuse PINs that contradict the hashes already registered on ``record``."""
    cancel_hash: str | None = record.cancel_pin_hash
    duress_hash: str | None = record.duress_pin_hash
    if duress_hash and _matches(duress_hash, pins.cancel):
        raise PinError(f"c'est le code PIN de contrainte de {who}, pas son code PIN d'annulation")
    if cancel_hash and not _matches(cancel_hash, pins.cancel):
        raise PinError(f"le code PIN d'annulation ne correspond pas à celui enregistré pour {who}")
    if pins.duress is None:
        return
    if cancel_hash and _matches(cancel_hash, pins.duress):
        raise PinError(f"le code PIN de contrainte donné est le code PIN d'annulation de {who}")
    if duress_hash and not _matches(duress_hash, pins.duress):
        raise PinError(f"le code PIN de contrainte ne correspond pas à celui enregistré pour {who}")


def with_missing_hashes(record: Any, pins: Pins) -> Any | None:
    """``record`` with hashes for the PINs it lacks, or None when it needs nothing new."""
    update: dict[str, str] = {}
    hasher = PasswordHasher()
    if not record.cancel_pin_hash:
        update["cancel_pin_hash"] = hasher.hash(pins.cancel)
    if pins.duress is not None and not record.duress_pin_hash:
        update["duress_pin_hash"] = hasher.hash(pins.duress)
    return record.model_copy(update=update) if update else None
