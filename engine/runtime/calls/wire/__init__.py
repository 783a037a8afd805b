"""pixgate's own HTTP/1.1 client for step exchanges (see pool.py for why)."""

from .connection import Answer, WireError
from .pool import CannotConnect, WireClient

__all__ = ["Answer", "CannotConnect", "WireClient", "WireError"]
