"""Undo and confirm: what a reviewer does with a duplicate (``python -m producer restore | confirm``, and the
buttons of the review gallery).

**Restore** puts a duplicate back as a reviewed original, and remembers that it is no duplicate:

1. The verdict is recorded first, in ``<collection>_reviews`` (:mod:`worker.verdicts`), with the SHA-256 of the
   bytes being restored: from then on the worker decides those bytes at that key unique, whatever arrives —
   the copy's own notification, a replayed event, a backfill, a re-decision.
2. Quarantined: the exact version that was moved is copied back (server-side) from the quarantine bucket, born
   with ``dedup-status=unique`` and ``dedup-reviewed=restored`` among its tags, and its SHA-256 is verified
   against the one recorded when it was quarantined (:func:`worker.copyback.copy_back`, which the worker's
   promotion of a duplicate whose original went uses too). Tagged in place: its tags are rewritten the same way.
3. Its link is dropped (it points at no original any more) and it is sent to the worker to be decided again,
   which stores it in the index as an original.

The quarantined copy is **kept** (tagged ``dedup-reviewed=restored``, so a lifecycle rule can expire it): it is
the verified copy that makes every step safe to repeat, and the one left if the restored object is lost again.
Every step is idempotent and each run starts from what it finds, so a run killed anywhere is finished by running
it again. A key this service did not quarantine or tag as a duplicate is refused, and so is a key that now holds
other bytes than the copy (a new upload is never overwritten).

**Confirm** records that a duplicate is one (``dedup-reviewed=confirmed`` on the object, or on its quarantined
copy) and changes nothing else.

    >>> reviewer = Reviewer(settings, storage=storage, index=index, redecide=enqueue)
    >>> reviewer.restore("photos/cat-2.jpg")
    Done(object='photos/cat-2.jpg', verdict='restored', what='copied back from quarantine', kind='perceptual')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.actions import META_SHA256, Actions, QuarantinedCopy, outcome_from_metadata, quarantine_key
from worker.config import Settings
from worker.copyback import CopyBackRefusedError, copy_back
from worker.decision import Status
from worker.index import Index
from worker.links import Link
from worker.messages import ObjectEvent, split_id
from worker.object_ids import parse_id
from worker.outcome import MATCHED
from worker.storage import Storage
from worker.tags import PREFIX, REVIEWED, STATUS, merge, outcome_from_tags
from worker.verdicts import CONFIRMED, RESTORED, Review, Reviews

log = logging.getLogger(__name__)


class NotReviewableError(ValueError):
    """The object is not a duplicate this service moved or tagged (or no longer holds the reviewed bytes)."""


@dataclass(frozen=True, slots=True)
class Done:
    object: str
    verdict: str
    what: str  # what this run did, for the command line and the page
    kind: str


@dataclass(frozen=True, slots=True)
class _Match:
    original: str
    kind: str
    score: float
    event_time_ms: int


class Reviewer:
    def __init__(
        self, settings: Settings, *, storage: Storage, index: Index, redecide: Callable[[ObjectEvent], None]
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.index = index
        self.reviews = Reviews(index)
        self.actions = Actions(storage, settings.action, quarantine_bucket=settings.quarantine_bucket)
        self.redecide = redecide

    # Restore --------------------------------------------------------------------------------------------------

    def restore(self, object_id: str) -> Done:
        """Put ``bucket/key`` back (or retag it) as a reviewed original; see the module docs."""
        bucket, key = self._split(object_id)
        link = self.index.links_of([object_id]).get(object_id)
        earlier = self.reviews.of(object_id).get(RESTORED)
        copy = self.actions.find_copy(bucket, key)
        current = self.storage.stat(bucket, key)

        if copy is not None and (current is None or link is None or link.action != "tag"):
            what = self._restore_copy(object_id, link, earlier, copy)
        elif current is not None and self._tagged_duplicate(bucket, key):
            sha256 = self.storage.sha256(bucket, key)
            match = self._match(object_id, link, earlier, None)
            self._record(object_id, RESTORED, match, sha256)
            self._retag(bucket, key, {STATUS: Status.UNIQUE.value, REVIEWED: RESTORED})
            what = "retagged as a reviewed original"
        elif earlier is not None and current is not None and self.storage.sha256(bucket, key) == earlier.sha256:
            self._retag(bucket, key, {STATUS: Status.UNIQUE.value, REVIEWED: RESTORED})
            what = "already restored"
        else:
            raise NotReviewableError(f"{object_id}: not a duplicate this service quarantined or tagged; left alone")

        stored = self.reviews.of(object_id)[RESTORED]
        self.index.unlink_now([object_id])
        self.redecide(ObjectEvent(bucket, key, stored.event_time_ms or int(time.time() * 1000)))
        log.info("%s: restored (%s)", object_id, what)
        return Done(object_id, RESTORED, what, stored.kind)

    def _restore_copy(self, object_id: str, link: Link | None, earlier: Review | None, copy: QuarantinedCopy) -> str:
        """Copy the quarantined version back (:func:`worker.copyback.copy_back`), the verdict recorded first."""
        bucket, key = split_id(object_id)
        match = self._match(object_id, link, earlier, copy)

        def record(sha256: str) -> None:  # before the bytes are back: a replay must find the verdict
            self._record(object_id, RESTORED, match, sha256)
            log.info("%s: verdict recorded; copying back version %s", object_id, copy.version)

        target = quarantine_key(bucket, key)
        copy_tags = self.storage.get_tags(self.settings.quarantine_bucket, target, copy.version)
        tags = merge(copy_tags, {STATUS: Status.UNIQUE.value, REVIEWED: RESTORED}).tags
        try:
            copied = copy_back(self.storage, self.settings.quarantine_bucket, object_id, copy, tags=tags, before=record)
        except CopyBackRefusedError as exc:
            raise NotReviewableError(str(exc)) from None
        self._retag(bucket, key, {STATUS: Status.UNIQUE.value, REVIEWED: RESTORED})
        self._retag(self.settings.quarantine_bucket, target, {REVIEWED: RESTORED}, copy.version)
        return "copied back from quarantine" if copied else "already back in place"

    # Confirm --------------------------------------------------------------------------------------------------

    def confirm(self, object_id: str) -> Done:
        """Mark ``bucket/key`` as a duplicate a person looked at and agreed with (idempotent)."""
        bucket, key = self._split(object_id)
        link = self.index.links_of([object_id]).get(object_id)
        earlier = self.reviews.of(object_id).get(CONFIRMED)
        if link is None and earlier is None:
            raise NotReviewableError(f"{object_id}: not a duplicate in the index (restored, or never one)")
        copy = self.actions.find_copy(bucket, key)
        current = self.storage.stat(bucket, key)
        if current is not None and self._tagged_duplicate(bucket, key):
            sha256 = self.storage.sha256(bucket, key)
            self._record(object_id, CONFIRMED, self._match(object_id, link, earlier, None), sha256)
            self._retag(bucket, key, {REVIEWED: CONFIRMED})
            what = "tagged dedup-reviewed=confirmed"
        elif copy is not None:
            sha256 = copy.info.metadata.get(META_SHA256, "")
            self._record(object_id, CONFIRMED, self._match(object_id, link, earlier, copy), sha256)
            quarantined = quarantine_key(bucket, key)
            self._retag(self.settings.quarantine_bucket, quarantined, {REVIEWED: CONFIRMED}, copy.version)
            what = "its quarantined copy tagged dedup-reviewed=confirmed"
        else:
            raise NotReviewableError(f"{object_id}: neither tagged as a duplicate nor quarantined (yet?); left alone")
        stored = self.reviews.of(object_id)[CONFIRMED]
        log.info("%s: confirmed", object_id)
        return Done(object_id, CONFIRMED, what, stored.kind)

    # Plumbing -------------------------------------------------------------------------------------------------

    def _split(self, object_id: str) -> tuple[str, str]:
        """``(bucket, key)``, or :class:`~worker.object_ids.BadIdError` before any S3 or Milvus call sees it."""
        return parse_id(object_id, allowed=self.settings.bucket_allowed)

    def _tagged_duplicate(self, bucket: str, key: str) -> bool:
        outcome = outcome_from_tags(self.storage.get_tags(bucket, key))
        return outcome is not None and outcome.status in MATCHED  # a similar is reviewed like a tagged duplicate

    def _match(self, object_id: str, link: Link | None, earlier: Review | None, copy: QuarantinedCopy | None) -> _Match:
        """How the duplicate had matched: from its link, else an earlier run's review, else its copy's metadata."""
        if link is not None:
            return _Match(link.original, link.kind, link.score, link.event_time_ms)
        if earlier is not None:
            return _Match(earlier.original, earlier.kind, earlier.score, earlier.event_time_ms)
        outcome = outcome_from_metadata(copy.info.metadata) if copy is not None else None
        if outcome is not None:
            modified = copy.info.last_modified if copy is not None else None
            when = int(modified.timestamp() * 1000) if modified else int(time.time() * 1000)
            return _Match(outcome.original or "", outcome.kind_label, outcome.score or 0.0, when)
        log.warning("%s: no link or copy says how it matched", object_id)
        return _Match("", "none", 0.0, int(time.time() * 1000))

    def _record(self, object_id: str, verdict: str, match: _Match, sha256: str) -> None:
        review = Review(object_id, verdict, match.original, match.kind, match.score, sha256, match.event_time_ms)
        self.reviews.record(review)

    def _retag(self, bucket: str, key: str, ours: dict[str, str], version_id: str | None = None) -> None:
        """Set these ``dedup-*`` tags, keeping the user's; a new ``dedup-status`` drops the old outcome's
        ``dedup-of``/``kind``/``score``. Written only if something changes, within S3's 10 tags."""
        existing = self.storage.get_tags(bucket, key, version_id)
        old = {} if STATUS in ours else {k: v for k, v in existing.items() if k.startswith(PREFIX) and k not in ours}
        status = {STATUS: old.pop(STATUS)} if STATUS in old else {}
        merged = merge(existing, {**status, **ours, **old}).tags
        if merged != existing:
            self.storage.set_tags(bucket, key, merged, version_id)
