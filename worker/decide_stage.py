"""The pipeline's decide stage, one batch at a time: search, decide, store the originals, re-check them against what
other workers stored, link each duplicate to its original and send back whatever must be decided again.

It runs on the ``decide`` batcher thread of :class:`worker.pipeline.Pipeline`, which also asks it to forget a
removed object (:meth:`BatchDecider.forget`). What decides is :func:`worker.decision.decide`; this module says what
happens around it in the index (:mod:`worker.index`).

    >>> decider = BatchDecider(settings, index=index, reviews=Reviews(index), thresholds=t, redecide=enqueue)
    >>> decider.decide([signals])  # [Decision | None]: None is deferred until it has its embedding

Perceptual-only (``DEDUP_MODEL_WEIGHTS=none``) no image ever gets an embedding, so none waits for one: each is
decided on its exact and perceptual signals at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import replace

from worker import metrics
from worker.config import Settings
from worker.decision import Decision, Neighbour, Signals, Thresholds, decide, decide_or_defer
from worker.index import Index
from worker.links import SUGGEST, Link
from worker.messages import ObjectEvent
from worker.stores import Stores
from worker.verdicts import Reviews

log = logging.getLogger(__name__)


class BatchDecider:
    def __init__(
        self,
        settings: Settings,
        *,
        index: Index,
        reviews: Reviews,
        thresholds: Thresholds,
        redecide: Callable[[ObjectEvent], None],
        stores: Stores | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.reviews = reviews
        self.thresholds = thresholds
        self.redecide = redecide
        self.stores = stores  # None: every batch of new originals is re-checked

    def decide(self, items: list[Signals]) -> list[Decision | None]:
        """Search, decide, store the originals, re-check them against what other workers stored, record which
        original each duplicate points at, and send back whatever must be decided again. An image without an
        embedding that turns out not to be a duplicate gets None: deferred, it comes back with its embedding
        (never perceptual-only, where no image has one)."""
        seen = self.stores.read() if self.stores is not None else None  # before the first search
        before = self.index.stored(s.id for s in items)  # what the index held for these keys until now
        batch = [_as_stored(s, before) for s in items]
        with metrics.timed("search"):
            found = self.index.neighbours(batch, self.thresholds)
        not_duplicates = self.not_duplicates(batch, found)
        decisions, deferred = self.decide_first(batch, found, not_duplicates)
        verdict = {d.id: d for d in decisions}
        latest = {s.id: s for s in sorted(batch, key=lambda s: s.order) if s.id not in deferred}  # latest per key

        # Keys that were originals and are no longer, or now hold other bytes: their duplicates follow. Sent
        # before the index changes, since afterwards nothing would tell (a second sending is harmless).
        changed = [
            k
            for k, (sha256, _) in before.items()
            if k in latest and (not verdict[k].is_unique or sha256 != latest[k].sha256)
        ]
        self.send_back(self.index.dependents(changed), "original_changed", exclude=latest)

        originals = [s for s in latest.values() if verdict[s.id].is_unique]
        self.index.store(originals)
        self.index.discard((s.id, s.event_time_ms) for s in latest.values() if not verdict[s.id].is_unique)
        times = _event_times(found)

        yielded: set[str] = set()
        if originals and self.must_recheck(seen):
            with metrics.timed("search"):
                again = self.index.neighbours(originals, self.thresholds)
            times |= _event_times(again)
            for d in decide(originals, again, self.thresholds, not_duplicates | self.not_duplicates(originals, again)):
                if d.is_unique:
                    similar = d.similar or verdict[d.id].similar  # it may resemble one stored concurrently
                    verdict[d.id] = replace(verdict[d.id], supersedes=_union(verdict[d.id], d), similar=similar)
                else:
                    log.info("%s yields to %s, stored concurrently", d.id, d.match.original if d.match else "")
                    self.index.discard([(d.id, latest[d.id].event_time_ms)])
                    verdict[d.id] = d
                    yielded.add(d.id)
                    if d.id in before:  # it was an original before this batch: its duplicates follow
                        self.send_back(self.index.dependents([d.id]), "original_changed", exclude=latest)

        final = [verdict[key] for key in latest]
        # A duplicate's link says what was done to it; a similar's says it is only a suggestion (it stays an
        # original where it is). Its link lets the gallery show it and makes it follow what it resembles.
        links = [(d, d.match, self.settings.action.value) for d in final if d.match]
        links += [(d, d.similar, SUGGEST) for d in final if d.similar and not d.match]
        self.index.link(
            Link(d.id, m.original, latest[d.id].event_time_ms, m.kind.value, m.score, action) for d, m, action in links
        )
        self.index.unlink((d.id, latest[d.id].event_time_ms) for d in final if d.is_unique and not d.similar)
        for decision in final:
            later = {key: times[key] for key in decision.supersedes}
            self.send_back(later, "superseded", exclude=latest, by=decision.id)
        # Batch-mates decided as duplicates of an original that has just yielded point at a duplicate now: they
        # are decided again (after their links are written, which the new decision replaces).
        orphans = {
            d.id: latest[d.id].event_time_ms
            for d in final
            if (m := d.match or d.similar) is not None and m.original in yielded
        }
        self.send_back(orphans, "original_changed")
        return [verdict.get(s.id) for s in batch]

    def decide_first(
        self, batch: Sequence[Signals], found: Mapping[str, list[Neighbour]], not_duplicates: set[tuple[str, str]]
    ) -> tuple[list[Decision], frozenset[str]]:
        """The batch's first decisions, and the images deferred until they have an embedding (rule 8 of
        :mod:`worker.decision`): none perceptual-only, where no image waits for one."""
        if self.settings.perceptual_only:
            return decide(batch, found, self.thresholds, not_duplicates), frozenset()
        return decide_or_defer(batch, found, self.thresholds, not_duplicates)

    def must_recheck(self, seen: int | None) -> bool:
        """Whether the originals just stored must be searched again: unless the store count shows that no other
        worker stored anything since ``seen`` (:mod:`worker.stores`), another may have stored a match meanwhile."""
        if self.stores is not None and self.stores.alone_since(seen):
            metrics.RECHECKS.labels(result="skipped").inc()
            return False
        metrics.RECHECKS.labels(result="searched").inc()
        return True

    def not_duplicates(self, batch: Sequence[Signals], found: Mapping[str, list[Neighbour]]) -> set[tuple[str, str]]:
        """``(image, candidate)`` pairs that must not match: a picture a reviewer restored (these very bytes) is
        no duplicate of anything, so a replay, a backfill or a re-decision never moves it again."""
        restored = self.reviews.restored(s.id for s in batch)
        kept = [s for s in batch if restored.get(s.id) == s.sha256]
        return {(s.id, other) for s in kept for other in [*(n.id for n in found.get(s.id, ())), *(b.id for b in batch)]}

    def send_back(self, keys: Mapping[str, int], reason: str, *, exclude: Container[str] = (), by: str = "") -> None:
        """Enqueue a new decision for each ``{id: event_time_ms}`` (ids being decided right now excepted)."""
        for key, event_time_ms in sorted(keys.items()):
            if key in exclude:
                continue
            log.info("%s: deciding again (%s%s)", key, reason, f" by {by}" if by else "")
            metrics.REDECISIONS.labels(reason=reason).inc()
            self.redecide(ObjectEvent.from_id(key, event_time_ms, redecision=reason))

    def forget(self, object_id: str, event_time_ms: int) -> None:
        """Drop a gone object's row and link (unless a newer upload wrote them) and send its duplicates back."""
        self.index.discard([(object_id, event_time_ms)])
        self.index.unlink([(object_id, event_time_ms)])
        if object_id not in self.index.event_times([object_id]):  # not replaced by a newer upload
            self.send_back(self.index.dependents([object_id]), "original_removed")


def _as_stored(item: Signals, before: Mapping[str, tuple[str, int]]) -> Signals:
    """An item with the same bytes as its key's stored original keeps that original's time: a replayed or
    stale event, or identical bytes uploaded again, neither moves an original in the order nor rewrites it."""
    stored = before.get(item.id)
    if stored is not None and stored[0] == item.sha256 and stored[1] != item.event_time_ms:
        return replace(item, event_time_ms=stored[1])
    return item


def _event_times(found: dict[str, list[Neighbour]]) -> dict[str, int]:
    return {n.id: n.event_time_ms for rows in found.values() for n in rows}


def _union(first: Decision, second: Decision) -> tuple[str, ...]:
    return tuple(sorted({*first.supersedes, *second.supersedes}))
