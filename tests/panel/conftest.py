from tests.services.chromium import browser

__all__ = ["browser"]
