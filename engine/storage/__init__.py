"""Where images live: an interface (base.py) with a local-disk default and S3 (aiobotocore).

The runtime talks to `StorageHub` and the `Storage` interface only; nothing outside this
package knows which backend is live. (The hub lives in `hub.py`; S3 is imported only when a
config asks for it: aiobotocore takes most of a second to import.)
"""

from .base import ByteRange, NotSatisfiable, Opened, Storage, StorageError, is_name, new_name
from .config import StorageConfig

__all__ = [
    "ByteRange",
    "NotSatisfiable",
    "Opened",
    "Storage",
    "StorageConfig",
    "StorageError",
    "is_name",
    "new_name",
]
