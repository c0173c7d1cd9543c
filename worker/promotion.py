"""When an original goes, its quarantined duplicates do not stay the only copies: the earliest comes back.

An original that is removed (``s3:ObjectRemoved``) or overwritten with other bytes sends its duplicates back to
be decided again (reasons ``original_removed`` and ``original_changed``, :mod:`worker.decide_stage`). A tagged
duplicate is still at its key and is simply decided again. A quarantined one is not: with
``DEDUP_ON_ORIGINAL_REMOVED=promote`` (the default) it is decided again **from its quarantined copy's bytes**,
and then:

* decided ``unique`` (the earliest of the group: nothing earlier is indexed), it is **promoted**: the pipeline
  has stored it in the index as an original; the exact quarantined version is copied back to its own key with
  the verified copy-back that ``restore`` uses (:func:`worker.copyback.copy_back`: SHA-256 checked, a newer
  upload at the key never overwritten), born with ``dedup-status=unique`` and ``dedup-promoted=<reason>``
  (a tag that stays while the object is ``unique``: the event of the copy-back itself, a replay or a backfill
  decide it again without losing it); a ``promoted`` row in ``<collection>_reviews`` tells the gallery why. Its
  quarantined copy is kept, tagged ``dedup-promoted`` too;
* decided a duplicate (of a sibling promoted before it, or of another original), it stays in quarantine and its
  link and its copy's tags follow the new original.

It is left in quarantine, logged and counted (``dedup_left_in_quarantine_total{reason}``), when
``DEDUP_ON_ORIGINAL_REMOVED=keep`` (``keep``), when the removed original is back at its key (``original_back``:
a re-upload, which its own event decides) or when its own key holds other bytes by the time it is copied back
(``key_taken``: that upload's event replaces it in the index, and its duplicates follow once more).

Each step starts from what it finds. An object the index already holds as an original with its copy's bytes is
a promotion an earlier delivery began: it is finished whatever the link says (the decision dropped the link). A
delivery killed after the copy-back finds the object in place and is decided like any other; the sticky
``dedup-promoted`` tag survives that.

    >>> promotion = Promotion(settings, storage=storage, index=index, actions=actions, reviews=reviews)
    >>> pending = promotion.pending(event)       # None: not a quarantined duplicate of a gone original
    >>> promotion.finish(event, pending, outcome)  # after the decision
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from worker import metrics
from worker.actions import META_SHA256, Actions, QuarantinedCopy, outcome_from_metadata, quarantine_key
from worker.config import OnOriginalRemoved, Settings
from worker.copyback import CopyBackRefusedError, copy_back
from worker.decision import Status
from worker.index import Index
from worker.links import Link
from worker.messages import ObjectEvent, split_id
from worker.outcome import Outcome
from worker.storage import Blob, Storage
from worker.tags import PROMOTED as PROMOTED_TAG
from worker.tags import merge, outcome_tags
from worker.verdicts import PROMOTED, Review, Reviews

log = logging.getLogger(__name__)

#: Re-decision reasons that mean "your original went" (removed, or overwritten with other bytes).
ORIGINAL_GONE = ("original_removed", "original_changed")


@dataclass(frozen=True, slots=True)
class Pending:
    """A quarantined duplicate to decide again from its copy's bytes (``blob``)."""

    copy: QuarantinedCopy
    blob: Blob
    reason: str
    link: Link | None  # None when an earlier delivery's decision already dropped it

    @property
    def sha256(self) -> str:
        return self.copy.info.metadata.get(META_SHA256, "")


class Promotion:
    def __init__(self, settings: Settings, *, storage: Storage, index: Index, actions: Actions, reviews: Reviews):
        self.settings = settings
        self.storage = storage
        self.index = index
        self.actions = actions
        self.reviews = reviews

    def pending(self, event: ObjectEvent) -> Pending | Outcome | None:
        """For an object missing from its key: a :class:`Pending` promotion to decide, the :class:`Outcome` it
        keeps when it stays in quarantine, or None when this is no quarantined duplicate of a gone original."""
        if event.redecision not in ORIGINAL_GONE:
            return None
        copy = self.actions.find_copy(event.bucket, event.key)
        if copy is None:
            return None
        kept = outcome_from_metadata(copy.info.metadata) or Outcome.unique()
        stored = self.index.stored([event.id]).get(event.id)
        begun = stored is not None and stored[0] == copy.info.metadata.get(META_SHA256)
        link = self.index.links_of([event.id]).get(event.id)
        if not begun and (link is None or link.action != "quarantine"):
            return None
        if not begun and self.settings.on_original_removed is OnOriginalRemoved.KEEP:
            log.info(
                "%s: stays in quarantine although its original %s went (%s; DEDUP_ON_ORIGINAL_REMOVED=keep)",
                event.id,
                link.original if link else "?",
                event.redecision,
            )
            metrics.LEFT_IN_QUARANTINE.labels(reason="keep").inc()
            return kept
        if not begun and link is not None and event.redecision == "original_removed" and self._exists(link.original):
            log.info("%s: its original %s is back (uploaded again); stays in quarantine", event.id, link.original)
            metrics.LEFT_IN_QUARANTINE.labels(reason="original_back").inc()
            return kept
        target = quarantine_key(event.bucket, event.key)
        blob = self.storage.fetch(self.settings.quarantine_bucket, target, copy.version)
        log.info("%s: its original went (%s); deciding again from its quarantined copy", event.id, event.redecision)
        return Pending(copy, blob, event.redecision or "", link)

    def finish(self, event: ObjectEvent, pending: Pending, outcome: Outcome) -> Outcome:
        """Act on the decision made from the copy's bytes: promote a unique one, or let a duplicate follow its
        new original (its copy stays where it is)."""
        if outcome.status in {Status.UNIQUE, Status.SIMILAR}:  # an original in the index either way (rule 10)
            return self._promote(event, pending, outcome)
        target = quarantine_key(event.bucket, event.key)
        existing = self.storage.get_tags(self.settings.quarantine_bucket, target, pending.copy.version)
        merged = merge(existing, outcome_tags(outcome)).tags
        if merged != existing:
            self.storage.set_tags(self.settings.quarantine_bucket, target, merged, pending.copy.version)
        log.info("%s: stays in quarantine, now a duplicate of %s", event.id, outcome.original)
        return outcome

    def _promote(self, event: ObjectEvent, pending: Pending, outcome: Outcome) -> Outcome:
        target = quarantine_key(event.bucket, event.key)
        quarantine = self.settings.quarantine_bucket
        copy_tags = self.storage.get_tags(quarantine, target, pending.copy.version)
        tags = merge(copy_tags, {**outcome_tags(outcome), PROMOTED_TAG: pending.reason}).tags
        gone = pending.link.original if pending.link is not None else ""

        def record(sha256: str) -> None:  # before the bytes are back: the gallery can say why it is an original
            kind, score = (pending.link.kind, pending.link.score) if pending.link is not None else ("", 0.0)
            self.reviews.record(Review(event.id, PROMOTED, gone, kind, score, sha256, event.event_time_ms))
            marked = merge(copy_tags, {PROMOTED_TAG: pending.reason}).tags
            if marked != copy_tags:
                self.storage.set_tags(quarantine, target, marked, pending.copy.version)

        try:
            copied = copy_back(self.storage, quarantine, event.id, pending.copy, tags=tags, before=record)
        except CopyBackRefusedError as exc:
            log.warning("%s: not promoted: %s", event.id, exc)
            metrics.LEFT_IN_QUARANTINE.labels(reason="key_taken").inc()
            return outcome
        if copied:
            metrics.PROMOTED.inc()
        log.info(
            "%s: promoted to original (%s%s); its quarantined copy is kept",
            event.id,
            pending.reason,
            f" of {gone}" if gone else "",
        )
        return outcome

    def _exists(self, object_id: str) -> bool:
        bucket, key = split_id(object_id)
        return self.storage.stat(bucket, key) is not None
