"""The device fleet as the dispatcher sees it: health, floods, and the broker's obedience.

``devicehealth`` (pure) and ``health`` (its shell) flag silent or weak devices;
``floodwatch`` (pure) and ``quarantine`` cut a flooding device at the broker;
``dynsec_commands`` (pure) and ``broker_control`` send and confirm the broker's
dynamic-security commands (quarantine, revocation).
"""
