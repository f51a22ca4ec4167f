"""Home visits: declared visits, their timer, and the alert a missed check-in raises.

``timer`` is the pure state machine, ``runner`` its I/O shell, ``place`` checks
that a declared visit can be routed.
"""
