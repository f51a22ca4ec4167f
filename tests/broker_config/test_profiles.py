"""The development broker (``make demo``, the tests, ``make bench``) delivers messages as production's does.

The two shipped profiles differ on purpose only in how a client gets in (TLS
listener, certificates as identities, loopback port) and in log formatting.
Any other difference would make the demo, the test suite and the benchmark
measure a broker that production does not run: the benchmark ran without
``set_tcp_nodelay`` for rounds, and Nagle held an alert behind the PUBACK of
the one before (publish → dispatcher p50 13 ms at 100 alerts/s, 0.5 ms with it).
"""

from __future__ import annotations

from broker_config.runner import config_template

# How a client reaches the broker: TLS and per-device certificates in production, a
# loopback port with passwords in development.
ENTRY_ONLY = frozenset(
    {
        "listener",
        "cafile",
        "certfile",
        "keyfile",
        "crlfile",
        "tls_version",
        "ciphers",
        "require_certificate",
        "use_identity_as_username",
        "use_username_as_clientid",
    }
)
LOG_FORMAT_ONLY = frozenset({"log_timestamp_format"})


def directives(profile: str) -> set[tuple[str, str]]:
    """Each ``name value`` line of a profile, comments and blank lines left out."""
    found = set()
    for line in config_template(profile).splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            name, _, value = text.partition(" ")
            found.add((name, value.strip()))
    return found


def delivery_settings(profile: str) -> set[tuple[str, str]]:
    return {(name, value) for name, value in directives(profile) if name not in ENTRY_ONLY | LOG_FORMAT_ONLY}


def test_the_development_broker_queues_bounds_and_sends_as_production_does() -> None:
    prod, dev = delivery_settings("prod"), delivery_settings("dev")
    missing_in_dev, only_in_dev = prod - dev, dev - prod
    assert not missing_in_dev, f"only production sets these: {sorted(missing_in_dev)}"
    assert not only_in_dev, f"only the development broker sets these: {sorted(only_in_dev)}"


def test_both_profiles_send_small_packets_without_delay() -> None:
    # Named on its own: it is the setting whose absence cost the most (see the module docstring).
    for profile in ("prod", "dev"):
        assert ("set_tcp_nodelay", "true") in directives(profile), profile
