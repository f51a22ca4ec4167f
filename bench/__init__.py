"""Benchmark of the alert path: real broker, dispatcher and provider sandbox, separate processes."""
