"""Refuse empty, short or placeholder secrets at start-up, without ever echoing them.

An empty Twilio auth token made the webhooks accept requests signed with the
key "" (anyone could then forge a responder's "1"), and the documented
``printf '%s' "$TWILIO_AUTH_TOKEN" > …`` writes exactly that when the variable
is unset. These checks run inside the pydantic settings models, whose errors
are configured with ``hide_input_in_errors`` so that a refused value never
reaches a log or a terminal, not even its first characters.
"""

from __future__ import annotations

import re
import secrets

from pydantic import SecretStr

MIN_SECRET_CHARS = 16  # Twilio auth tokens are 32 hex characters; anything this short is a typo or a stub
# Words that only appear in example values, lower-cased (dispatcher.env.example, docs, tutorials).
# Long ones anywhere in the value. Short ones only at its start, written in one case and
# followed by a separator or the end ("TODO_…", "your-token"): a random secret drew "ToDOGy4H…"
# once in 40,000 tries when any case was enough, and refused to start.
PLACEHOLDER_WORDS = (
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "exemple",
    "secret_here",
    "token_here",
)
PLACEHOLDER_PREFIXES = ("your", "votre", "todo", "fixme", "dummy", "test123")
_PLACEHOLDER_START = re.compile(
    "|".join(rf"(?:{word}|{word.upper()})(?:[-_ .:]|$)" for word in PLACEHOLDER_PREFIXES) + "|xxxx|XXXX"
)
GENERATED_SECRET_BYTES = 18  # 144 bits, 24 URL-safe characters


def secret_problem(value: str) -> str | None:
    """Why ``value`` cannot be a real secret (French, without quoting it), or None when it may be."""
    stripped = value.strip()
    if not stripped:
        return "vide"
    if len(stripped) < MIN_SECRET_CHARS:
        return f"trop court (moins de {MIN_SECRET_CHARS} caractères)"
    lowered = stripped.lower()
    if len(set(lowered)) == 1:
        return "un seul caractère répété : valeur d'exemple"
    if stripped.startswith("$") or (stripped.startswith("<") and stripped.endswith(">")):
        return "variable non développée ou gabarit : valeur d'exemple"
    if any(word in lowered for word in PLACEHOLDER_WORDS) or _PLACEHOLDER_START.match(stripped):
        return "valeur d'exemple (changeme, placeholder, xxxx…)"
    return None


def generate_secret(nbytes: int = GENERATED_SECRET_BYTES) -> str:
    """A random URL-safe secret that :func:`secret_problem` accepts (redrawn if it ever refuses one)."""
    while True:
        candidate = secrets.token_urlsafe(nbytes)
        if secret_problem(candidate) is None:
            return candidate


def require_real_secret(value: SecretStr) -> SecretStr:
    """Pydantic validator body: raise ValueError (without the value) for a placeholder secret."""
    problem = secret_problem(value.get_secret_value())
    if problem is not None:
        raise ValueError(f"secret refusé : {problem}")
    return value


def require_real_optional_secret(value: SecretStr | None) -> SecretStr | None:
    """Same as :func:`require_real_secret`, for a secret that may be left unset (None)."""
    return None if value is None else require_real_secret(value)
