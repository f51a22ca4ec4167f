"""The admin screens at ``/admin/``: devices, users, audit log, statistics, directory (docs/admin.md).

Static HTML/CSS/JS (no CDN, no build step) over the REST API; every write goes
through the same admin-only endpoints, CSRF check and audit as API clients.
"""
