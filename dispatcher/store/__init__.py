"""Persistence behind a small interface (SQLite default, PostgreSQL later)."""
