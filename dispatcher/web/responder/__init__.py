"""The responder page behind every alert SMS's link: ``/r/<token>`` (docs/responder.md)."""

from dispatcher.web.responder.routes import mount_responder

__all__ = ["mount_responder"]
