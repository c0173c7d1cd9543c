"""Object ids (``bucket/key``) that come from outside: the review gallery's forms and links, the ``restore`` and
``confirm`` commands. One place decides whether such an id may be used, before any S3 or Milvus call sees it.

The S3 client refuses some keys by raising ``ValueError`` (``.`` and ``..`` segments, an empty key) and the
index refuses others (longer than its id field); a request must get a clear "bad id", never a server error.
Refused here:

* anything but ``BUCKET/KEY`` with both parts non-empty;
* a bucket outside ``DEDUP_BUCKETS`` (the quarantine bucket is never one: its copies are reached through the
  duplicate's own id, by their metadata);
* a key over S3's 1024 UTF-8 bytes, with an empty, ``.`` or ``..`` segment, with control characters, or that is
  not valid Unicode (lone surrogates).

Ids are checked as given, after the one decoding the web framework does: ``%2e%2e`` arriving encoded twice is a
literal key of six characters, which S3 stores and serves as such, never a path step.

    >>> parse_id("photos/2024/cat.jpg", allowed=lambda b: b == "photos")
    ('photos', '2024/cat.jpg')
    >>> parse_id("photos/../private/x.jpg", allowed=lambda b: b == "photos")
    Traceback (most recent call last):
    ...
    worker.object_ids.BadIdError: 'photos/../private/x.jpg': a key may not have '.' or '..' segments
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from worker.messages import split_id

#: S3's limit on a key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024


class BadIdError(ValueError):
    """An id that is not a ``bucket/key`` this service may touch; the message says why (safe to show)."""


class NotAllowedIdError(BadIdError):
    """A well-formed id in a bucket this service does not watch (outside ``DEDUP_BUCKETS``)."""


def parse_id(object_id: str, *, allowed: Callable[[str], bool]) -> tuple[str, str]:
    """``(bucket, key)`` of an id from outside, or :class:`BadIdError` (:class:`NotAllowedIdError` for a bucket
    that ``allowed`` refuses)."""
    shown = _shown(object_id)
    bucket, key = split_id(object_id)
    if not bucket or not key:
        raise BadIdError(f"{shown}: expected BUCKET/KEY")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadIdError(f"{shown}: not valid Unicode") from None
    if any(unicodedata.category(c) == "Cc" for c in object_id):
        raise BadIdError(f"{shown}: control characters are not allowed")
    if size > MAX_KEY_BYTES:
        raise BadIdError(f"{shown}: a key is at most {MAX_KEY_BYTES} bytes, this one has {size}")
    segments = key.split("/")
    if any(s in {".", ".."} for s in segments):
        raise BadIdError(f"{shown}: a key may not have '.' or '..' segments")
    if any(not s for s in segments):
        raise BadIdError(f"{shown}: a key may not have empty segments ('//', or '/' at either end)")
    if not allowed(bucket):
        raise NotAllowedIdError(f"{bucket!r}: not in DEDUP_BUCKETS; left alone")
    return bucket, key


def _shown(object_id: str) -> str:
    """The id for a message: quoted and escaped, and cut short (a 2,000-byte id must not fill a log)."""
    return repr(object_id if len(object_id) <= 120 else object_id[:120] + "…")
