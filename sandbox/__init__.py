"""Local stand-ins for external services (Twilio), for development, tests and the benchmark."""
