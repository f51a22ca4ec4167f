"""Vigie dispatcher: durable ingest, location, SSJ routing, escalation, API and console."""
