"""Thumbnails for the review gallery: made with the worker's own decoding limits, cached, and only ever of
objects in ``DEDUP_BUCKETS`` or of this service's own copies in the quarantine bucket.

    >>> thumbnails = Thumbnails(settings, storage)
    >>> jpeg = thumbnails.get("photos/cat.jpg", where="bucket")      # the object where it is
    >>> jpeg = thumbnails.get("photos/cat-2.jpg", where="quarantine")  # its quarantined copy

* Ids are checked first (:func:`worker.object_ids.parse_id`): a malformed one is
  :class:`~worker.object_ids.BadIdError`, one outside ``DEDUP_BUCKETS`` (the quarantine bucket included)
  :class:`NotServedError`.

* Objects are read with the worker's size limit (``DEDUP_MAX_IMAGE_BYTES``) and decoded by
  :func:`worker.imaging.decode` (its formats, ``DEDUP_MAX_IMAGE_PIXELS``, bomb checks, EXIF orientation); the
  thumbnail is re-encoded as a small JPEG, so no byte of the object itself ever reaches the page.
* A quarantined copy is found by its metadata (it must name that source), never by a key the page sends.
* Cached in memory by object, version and ETag (least recently used first out): an overwritten object gets a
  new thumbnail.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from PIL import Image

from worker import imaging
from worker.actions import Actions, quarantine_key
from worker.config import Settings
from worker.object_ids import BadIdError, NotAllowedIdError, parse_id
from worker.storage import ObjectMissingError, Storage

SIZE = 256
WHERE = ("bucket", "quarantine")


class NotServedError(LookupError):
    """No thumbnail for this object: outside the allowed buckets, missing, or not an image (message says)."""


class Thumbnails:
    def __init__(self, settings: Settings, storage: Storage, *, size: int = SIZE, entries: int = 2048) -> None:
        self.settings = settings
        self.storage = storage
        self.size = size
        self.entries = entries
        self.actions = Actions(storage, settings.action, quarantine_bucket=settings.quarantine_bucket)
        self._cache: OrderedDict[tuple[str, str, str | None, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        imaging.configure(settings.max_image_pixels)

    def get(self, object_id: str, *, where: str = "bucket") -> bytes:
        """A JPEG thumbnail of ``bucket/key`` where it is (``bucket``) or of its quarantined copy."""
        if where not in WHERE:
            raise BadIdError(f"where must be one of {WHERE}")
        try:
            bucket, key = parse_id(object_id, allowed=self.settings.bucket_allowed)
        except NotAllowedIdError as exc:
            raise NotServedError(str(exc)) from None
        version: str | None = None
        if where == "quarantine":
            copy = self.actions.find_copy(bucket, key)
            if copy is None:
                raise NotServedError(f"{object_id}: no quarantined copy")
            bucket, key, version = self.settings.quarantine_bucket, quarantine_key(bucket, key), copy.version
        info = self.storage.stat(bucket, key, version)
        if info is None:
            raise NotServedError(f"{object_id}: not found")
        cache_key = (bucket, key, version, info.etag)
        with self._lock:
            if (cached := self._cache.get(cache_key)) is not None:
                self._cache.move_to_end(cache_key)
                return cached
        made = self._make(bucket, key, version)
        with self._lock:
            self._cache[cache_key] = made
            while len(self._cache) > self.entries:
                self._cache.popitem(last=False)
        return made

    def _make(self, bucket: str, key: str, version: str | None) -> bytes:
        try:
            blob = self.storage.fetch(bucket, key, version)
        except ObjectMissingError as exc:
            raise NotServedError(f"{bucket}/{key}: not found") from exc
        picture = imaging.decode(blob.data, max_pixels=self.settings.max_image_pixels, min_side=self.size)
        picture.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=80)
        return out.getvalue()
