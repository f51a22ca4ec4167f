"""Vigie on-device client: gestures on a hidden button, a durable outbox, MQTT to the dispatcher.

Run it with the ``vigie-device`` console script (see :mod:`device.cli`); the
annotated configuration lives in ``device/example-config.toml``.
"""
