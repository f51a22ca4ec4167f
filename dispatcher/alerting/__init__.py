"""The alert path: MQTT message -> ingest -> escalation engine -> delivery -> provider callbacks.

``mqtt`` and ``ingest`` (with ``admission``, ``ratelimit``, ``rejectlog``) take a
device's message to a durable row; ``engine`` runs the pure ``escalation`` state
machine; ``delivery`` and ``notifier`` send what it decides, ``reconcile`` /
``reconciler`` settle sends in doubt, ``webhooks`` and ``smsreplies`` bring the
provider's statuses and the responders' answers back. ``texts`` is the one
source of every message a person receives.
"""
