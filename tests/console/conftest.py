"""Console tests reuse the served full app of the API tests."""

from tests.api.conftest import directory, served, tile_url

__all__ = ["directory", "served", "tile_url"]
