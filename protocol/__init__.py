"""Vigie wire protocol: the single source of truth shared by device and dispatcher.

Read ``docs/protocol.md`` for the specification; golden vectors live in
``tests/protocol/vectors``.
"""
