"""Console tests reuse the served full app of the API tests."""

from tests.api.conftest import served, tile_url

__all__ = ["served", "tile_url"]
