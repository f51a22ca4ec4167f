"""Console tests reuse the served full app of the API tests."""

from tests.api.conftest import served

__all__ = ["served"]
