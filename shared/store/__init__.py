"""The object store: port, S3 adapter and folder adapter."""

from shared.store.base import ObjectStore, StoredPart, Upload
from shared.store.files import FileStore
from shared.store.s3 import S3Store

__all__ = ["FileStore", "ObjectStore", "S3Store", "StoredPart", "Upload"]
