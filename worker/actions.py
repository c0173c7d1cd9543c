"""What happens to an object once its outcome is known: tags, or quarantine for duplicates.

* Every outcome is written as ``dedup-*`` tags merged with the object's own (see :mod:`worker.tags`).
* In ``quarantine`` mode a duplicate is copied to ``DEDUP_QUARANTINE_BUCKET`` under ``<bucket>/<key>``, with
  metadata naming its source and original; the copy is **verified** (its bytes' SHA-256 equals what was
  decided on) and the source is deleted only then, and only if it still holds those bytes (same ETag).
  Any failure before the delete leaves the source where it was; the task retries. The quarantine bucket is
  versioned, so a later duplicate under the same key never overwrites an earlier quarantined copy; copy,
  verification and delete name exact versions (in a versioned source bucket, the very version decided on).

A redelivered quarantine task whose source is already gone finds its verified copy
(:meth:`Actions.already_quarantined`) and reports the same outcome instead of an error.

    >>> actions = Actions(storage, Action.QUARANTINE, quarantine_bucket="dedup-quarantine")
    >>> actions.apply(event, outcome, etag=blob.etag, sha256=digest, version_id=blob.version_id)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from worker.config import Action
from worker.decision import Kind, Status
from worker.errors import TransientError
from worker.messages import ObjectEvent
from worker.outcome import Outcome
from worker.storage import Info, ObjectMissingError, Storage
from worker.tags import decode_value, encode_value, merge, outcome_from_tags, outcome_tags

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024

# Metadata on a quarantined copy (sent as x-amz-meta-*, values encoded like tag values).
META_SOURCE = "dedup-source"
META_SOURCE_ETAG = "dedup-source-etag"
META_SHA256 = "dedup-sha256"
META_ORIGINAL = "dedup-of"
META_KIND = "dedup-kind"
META_SCORE = "dedup-score"


@dataclass(frozen=True, slots=True)
class Applied:
    """What :meth:`Actions.apply` did, for logs and metrics."""

    action: str  # "tagged", "unchanged" (tags already right), "quarantined"
    dropped_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QuarantinedCopy:
    version: str | None  # None in an unversioned quarantine bucket
    info: Info


def quarantine_key(bucket: str, key: str) -> str:
    """Where a duplicate of ``bucket/key`` lands in the quarantine bucket: ``<bucket>/<key>``, or
    ``<bucket>/sha256-<digest of key>`` if that would exceed S3's 1024-byte key limit."""
    candidate = f"{bucket}/{key}"
    if len(candidate.encode()) <= MAX_KEY_BYTES:
        return candidate
    return f"{bucket}/sha256-{hashlib.sha256(key.encode()).hexdigest()}"


class Actions:
    def __init__(self, storage: Storage, action: Action, *, quarantine_bucket: str) -> None:
        self.storage = storage
        self.action = action
        self.quarantine_bucket = quarantine_bucket

    def apply(
        self, event: ObjectEvent, outcome: Outcome, *, etag: str, sha256: str, version_id: str | None = None
    ) -> Applied:
        """Record ``outcome`` on the object version that had ``etag`` and ``sha256`` when it was decided."""
        if self.action is Action.QUARANTINE and outcome.status is Status.DUPLICATE:
            self.quarantine(event, outcome, etag=etag, sha256=sha256, version_id=version_id)
            return Applied("quarantined")
        return self.tag(event, outcome, version_id=version_id or event.version_id)

    def tag(self, event: ObjectEvent, outcome: Outcome, *, version_id: str | None = None) -> Applied:
        existing = self.storage.get_tags(event.bucket, event.key, version_id)
        merged = merge(existing, outcome_tags(outcome))
        if merged.dropped:
            log.warning("%s: no room for tags %s (S3 allows 10 per object)", event.id, list(merged.dropped))
        if merged.tags == existing:
            return Applied("unchanged", merged.dropped)
        self.storage.set_tags(event.bucket, event.key, merged.tags, version_id)
        return Applied("tagged", merged.dropped)

    def quarantine(
        self, event: ObjectEvent, outcome: Outcome, *, etag: str, sha256: str, version_id: str | None = None
    ) -> None:
        target = quarantine_key(event.bucket, event.key)
        earlier = self._copy_of(event, etag) if etag else None
        if earlier is not None and self.storage.sha256(self.quarantine_bucket, target, earlier.version) == sha256:
            # An earlier delivery copied and verified it, then stopped before the delete: no second copy. (Or a
            # promoted duplicate, copied back from this very copy, goes back to quarantine: the copy's tags name
            # its new original.)
            log.info("%s: reusing the copy an earlier delivery made", event.id)
            existing = self.storage.get_tags(self.quarantine_bucket, target, earlier.version)
            merged = merge(existing, outcome_tags(outcome)).tags
            if merged != existing:
                self.storage.set_tags(self.quarantine_bucket, target, merged, earlier.version)
        else:
            self._copy(event, outcome, target, etag=etag, sha256=sha256, version_id=version_id)
        source = self.storage.stat(event.bucket, event.key, version_id)
        if source is None:
            log.info("%s: already gone; its verified copy is %s/%s", event.id, self.quarantine_bucket, target)
            return
        if etag and source.etag != etag:
            raise TransientError("source_changed", f"{event.id} was overwritten while being quarantined")
        # Unversioned source buckets leave a window between this check and the delete in which a new upload
        # under the same key would be deleted; a versioned bucket closes it (the delete names the version).
        self.storage.remove(event.bucket, event.key, version_id)
        log.info("%s: quarantined to %s/%s", event.id, self.quarantine_bucket, target)

    def _copy(
        self, event: ObjectEvent, outcome: Outcome, target: str, *, etag: str, sha256: str, version_id: str | None
    ) -> None:
        """Copy the source into quarantine with our metadata and its tags plus ours, and verify the copy."""
        tags = merge(self.storage.get_tags(event.bucket, event.key, version_id), outcome_tags(outcome)).tags
        metadata = {
            META_SOURCE: encode_value(event.id),
            META_SOURCE_ETAG: etag,
            META_SHA256: sha256,
            META_ORIGINAL: encode_value(outcome.original or ""),
            META_KIND: outcome.kind_label,
            META_SCORE: f"{outcome.score or 0.0:.4f}",
        }
        copy_version = self.storage.copy(
            source_bucket=event.bucket,
            source_key=event.key,
            version_id=version_id,
            match_etag=etag or None,
            bucket=self.quarantine_bucket,
            key=target,
            metadata=metadata,
            tags=tags,
        )
        copied = self.storage.sha256(self.quarantine_bucket, target, copy_version)
        if copied != sha256:
            raise TransientError("quarantine_verify", f"{target}: copy has sha256 {copied}, expected {sha256}")

    def recorded(self, event: ObjectEvent) -> Outcome | None:
        """The outcome recorded for an object: its tags, or its quarantined copy; None while undecided."""
        try:
            tags = self.storage.get_tags(event.bucket, event.key, event.version_id)
        except ObjectMissingError:
            return self.quarantined_copy(event)
        return outcome_from_tags(tags)

    def already_quarantined(self, event: ObjectEvent) -> Outcome | None:
        """In quarantine mode, the outcome recorded on this object's copy if it is of this very upload."""
        return self.quarantined_copy(event) if self.action is Action.QUARANTINE else None

    def quarantined_copy(self, event: ObjectEvent) -> Outcome | None:
        """The outcome on this object's quarantined copy (of this very upload when ``event.etag`` is known),
        searching the quarantine bucket's versions newest first."""
        found = self._copy_of(event, event.etag)
        return _outcome_from_metadata(found.info.metadata) if found is not None else None

    def find_copy(self, bucket: str, key: str) -> QuarantinedCopy | None:
        """The newest copy this service quarantined of ``bucket/key`` (its metadata names that source), if any."""
        return self._copy_of(ObjectEvent(bucket, key, 0), None)

    def _copy_of(self, event: ObjectEvent, etag: str | None) -> QuarantinedCopy | None:
        """The newest quarantined copy of ``event``'s object (of the upload with ``etag`` when given)."""
        target = quarantine_key(event.bucket, event.key)
        source = encode_value(event.id)  # compared encoded: a long id is kept only as its digest
        try:
            versions: list[str | None] = [*self.storage.versions(self.quarantine_bucket, target)] or [None]
        except ObjectMissingError:  # no quarantine bucket (tag mode, or not created yet): no copy in it
            return None
        for version in versions:
            info = self.storage.stat(self.quarantine_bucket, target, version)
            if info is None or info.metadata.get(META_SOURCE) != source:
                continue
            if etag and info.metadata.get(META_SOURCE_ETAG) != etag:
                continue  # a copy of another upload under the same key
            return QuarantinedCopy(version, info)
        return None


def outcome_from_metadata(metadata: dict[str, str]) -> Outcome | None:
    """The duplicate outcome recorded in a quarantined copy's metadata (None if it is not ours)."""
    return _outcome_from_metadata(metadata)


def _outcome_from_metadata(metadata: dict[str, str]) -> Outcome | None:
    try:
        kind = Kind(metadata.get(META_KIND, ""))
        score = float(metadata.get(META_SCORE, "0"))
    except ValueError:
        return None
    original = decode_value(metadata.get(META_ORIGINAL, "")) or ""
    return Outcome(Status.DUPLICATE, original=original, kind=kind, score=score)
