"""The attack suite of issue 13: each attack replayed against the real broker, dispatcher and browser."""
