"""The verified copy-back of a quarantined duplicate to its own key, shared by a reviewer's ``restore``
(:mod:`worker.undo`) and the worker's promotion of a duplicate whose original went (:mod:`worker.promotion`).

1. The copy must record the SHA-256 of the bytes that were quarantined (else :class:`CopyBackRefusedError`).
2. If the key holds other bytes (a newer upload), nothing is written (:class:`CopyBackRefusedError`): a new
   upload is never overwritten. If it holds these very bytes, an earlier run put them back: nothing to copy.
3. ``before(sha256)`` runs (e.g. record a verdict, so that the bytes are never back without it).
4. The exact quarantined version is copied (server-side) to the key, born with ``tags``, and the result's
   SHA-256 is checked; a bad copy is removed again (the verified quarantined copy is still there) and the
   step fails with a :class:`~worker.errors.TransientError` to be retried.

The quarantined copy is never touched. Every step starts from what it finds, so a run killed anywhere is
finished by running it again (below, the second call finds the bytes already back).

    >>> copy_back(storage, "dedup-quarantine", "photos/cat-2.jpg", copy, tags={"dedup-status": "unique"})
    True
    >>> copy_back(storage, "dedup-quarantine", "photos/cat-2.jpg", copy, tags={"dedup-status": "unique"})
    False
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from worker.actions import META_SHA256, QuarantinedCopy, quarantine_key
from worker.errors import TransientError
from worker.messages import split_id
from worker.storage import Storage

log = logging.getLogger(__name__)


class CopyBackRefusedError(ValueError):
    """The copy cannot be put back: it records no SHA-256, or the key holds other bytes (message says)."""


def copy_back(
    storage: Storage,
    quarantine_bucket: str,
    object_id: str,
    copy: QuarantinedCopy,
    *,
    tags: Mapping[str, str],
    before: Callable[[str], None] = lambda _: None,
) -> bool:
    """Put ``copy`` back at ``object_id`` with ``tags``, verified; True if it copied, False if the bytes were
    already there. See the module docs."""
    bucket, key = split_id(object_id)
    sha256 = copy.info.metadata.get(META_SHA256, "")
    if not sha256:
        raise CopyBackRefusedError(f"{object_id}: its quarantined copy records no SHA-256; left alone")
    current = storage.stat(bucket, key)
    if current is not None and storage.sha256(bucket, key) != sha256:
        raise CopyBackRefusedError(
            f"{object_id}: holds other bytes than its quarantined copy (a new upload?); not overwritten"
        )
    before(sha256)
    if current is not None:
        return False
    version = storage.copy(
        source_bucket=quarantine_bucket,
        source_key=quarantine_key(bucket, key),
        version_id=copy.version,
        bucket=bucket,
        key=key,
        metadata={},
        tags=tags,
    )
    copied = storage.sha256(bucket, key, version)
    if copied != sha256:  # the quarantined copy is still there, verified: this bad one can go
        storage.remove(bucket, key, version)
        raise TransientError("copy_back_verify", f"{object_id}: copied-back bytes have sha256 {copied}")
    log.info("%s: copied back from quarantine version %s and verified (sha256 %s)", object_id, copy.version, sha256)
    return True
