"""Mosquitto configuration (dev and prod), ACLs, PKI and device provisioning."""
