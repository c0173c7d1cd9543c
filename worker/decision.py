"""The functional core: which images of a batch are duplicates, and of what.

A pure function of a batch's signals and what the index returned for them; no I/O. The worker calls it twice
per batch: once to decide, and once more after storing the new originals, with a fresh strongly-consistent
search, so that a concurrent worker's near-identical original is noticed and the later of the two yields.

Rules, in order:

1. An image is a duplicate only of an **earlier original**. "Earlier" means a smaller ``(event_time_ms, id)``,
   so the outcome does not depend on which worker saw which image first.
2. A candidate matches through one of three stages: ``exact`` (same SHA-256), ``perceptual`` (Hamming distance
   of the 64-bit perceptual hashes ≤ its threshold) or ``semantic`` (cosine of the embeddings ≥ its threshold;
   a threshold of None keeps the stage out of decisions).
3. Among the matching earlier originals the image points at the most similar one: exact beats perceptual beats
   semantic; within a stage the smaller distance (perceptual) or larger cosine (semantic) wins; ties go to the
   earliest original.
4. The batch is compared with itself: items are taken in order, and each one that stays unique is a candidate
   for those after it. Only originals are ever candidates.
5. An index row whose id is in the batch is ignored: the batch's copy is authoritative (a redelivered original
   never matches itself; an overwritten key is decided afresh).
6. An image that stays unique *supersedes* the later originals in the index that match it: those were decided
   before this earlier image arrived and must be decided again.
7. (:func:`decide_or_defer`) The worker skips the model for an image whose exact bytes an earlier indexed original
   holds. Such an image, without an embedding, can only be decided a duplicate; if it is not one after all (that
   original changed in the same batch), it is *deferred*: left out of the batch, so that it is no candidate for
   the others, and decided again with its embedding.
8. A pair listed in ``not_duplicates`` (``(image id, original id)``: what a reviewer said is no duplicate, see
   :mod:`worker.reviews`) never matches, whatever the stages measure.

Example::

    >>> a = Signals("b/a.jpg", 1, "aa", 0b1011, None)
    >>> copy = Signals("b/copy.jpg", 2, "aa", 0b1011, None)
    >>> [d.status for d in decide([copy, a], {}, Thresholds(perceptual=4, semantic=None))]
    ['duplicate', 'unique']
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

HASH_BITS = 64

Vector = npt.NDArray[np.float32]


class Kind(StrEnum):
    """How a duplicate was recognised, strongest first."""

    EXACT = "exact"
    PERCEPTUAL = "perceptual"
    SEMANTIC = "semantic"


class Status(StrEnum):
    UNIQUE = "unique"
    DUPLICATE = "duplicate"
    ERROR = "error"


_KIND_RANK = {Kind.EXACT: 0, Kind.PERCEPTUAL: 1, Kind.SEMANTIC: 2}


@dataclass(frozen=True, slots=True)
class Signals:
    """What the worker computed for one image. ``id`` is ``"bucket/key"``."""

    id: str
    event_time_ms: int
    sha256: str
    phash: int
    embedding: Vector | None = field(default=None, compare=False)

    @property
    def order(self) -> tuple[int, str]:
        return (self.event_time_ms, self.id)


@dataclass(frozen=True, slots=True)
class Neighbour:
    """An original the index returned for one image, with whatever it measured about the pair.

    ``sha256`` is set when the row came from the exact lookup, ``hamming`` from the perceptual search and
    ``cosine`` from the semantic search; the index adapter merges the three lookups into one Neighbour per id.
    """

    id: str
    event_time_ms: int
    sha256: str | None = None
    hamming: int | None = None
    cosine: float | None = None

    @property
    def order(self) -> tuple[int, str]:
        return (self.event_time_ms, self.id)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``perceptual``: largest Hamming distance that still matches; ``semantic``: smallest cosine.
    None switches a stage out of decisions (it is still computed and stored)."""

    perceptual: int | None
    semantic: float | None


@dataclass(frozen=True, slots=True)
class Match:
    original: str
    original_time_ms: int
    kind: Kind
    score: float  # similarity in [0, 1]: exact 1.0, perceptual 1 - hamming/64, semantic the cosine

    def rank(self, original_order: tuple[int, str]) -> tuple[int, float, tuple[int, str]]:
        return (_KIND_RANK[self.kind], -self.score, original_order)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict for one image. ``supersedes`` lists later originals that must be decided again."""

    id: str
    status: Status
    match: Match | None = None
    supersedes: tuple[str, ...] = ()

    @property
    def is_unique(self) -> bool:
        return self.status is Status.UNIQUE


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two perceptual hashes."""
    return (a ^ b).bit_count()


def decide(
    batch: Sequence[Signals],
    neighbours: Mapping[str, Iterable[Neighbour]],
    thresholds: Thresholds,
    not_duplicates: Container[tuple[str, str]] = (),
) -> list[Decision]:
    """Decide every image of ``batch``; the result is in the batch's order.

    ``neighbours`` maps an image's id to the originals the index returned for it (missing ids: none).
    Several items with the same id (a replayed event in the same batch) share one decision, made for the
    latest of them. ``not_duplicates`` holds ``(image id, original id)`` pairs that never match (rule 8).
    """
    batch_ids = {item.id for item in batch}
    latest: dict[str, Signals] = {}
    for item in batch:
        if item.id not in latest or item.order > latest[item.id].order:
            latest[item.id] = item
    ordered = sorted(latest.values(), key=lambda s: s.order)

    decided: dict[str, Decision] = {}
    originals: list[Signals] = []  # earlier items of this batch that stayed unique
    for item in ordered:
        stored = [
            n for n in neighbours.get(item.id, ()) if n.id not in batch_ids and (item.id, n.id) not in not_duplicates
        ]
        earlier: list[tuple[Match, tuple[int, str]]] = []
        later: list[str] = []
        for n in stored:
            found = _match_neighbour(item, n, thresholds)
            if found is None:
                continue
            if n.order < item.order:
                earlier.append((found, n.order))
            else:
                later.append(n.id)
        for original in (o for o in originals if (item.id, o.id) not in not_duplicates):
            found = _match_signals(item, original, thresholds)
            if found is not None:
                earlier.append((found, original.order))
        if earlier:
            best = min(earlier, key=lambda pair: pair[0].rank(pair[1]))[0]
            decided[item.id] = Decision(item.id, Status.DUPLICATE, best)
        else:
            decided[item.id] = Decision(item.id, Status.UNIQUE, supersedes=tuple(sorted(set(later))))
            originals.append(item)
    return [decided[item.id] for item in batch]


def decide_or_defer(
    batch: Sequence[Signals],
    neighbours: Mapping[str, Iterable[Neighbour]],
    thresholds: Thresholds,
    not_duplicates: Container[tuple[str, str]] = (),
) -> tuple[list[Decision], frozenset[str]]:
    """:func:`decide` for a batch in which some images have no embedding yet (rule 7). Returns the decisions of
    the images that are decided, in the batch's order, and the ids of those deferred until they have one.

        >>> a = Signals("b/a.jpg", 1, "aa", 0b1011, None)
        >>> decisions, deferred = decide_or_defer([a], {}, Thresholds(perceptual=4, semantic=None))
        >>> decisions, sorted(deferred)
        ([], ['b/a.jpg'])
    """
    deferred: set[str] = set()
    while True:
        kept = [item for item in batch if item.id not in deferred]
        decisions = decide(kept, neighbours, thresholds, not_duplicates)
        without_embedding = {item.id for item in kept if item.embedding is None}
        unsettled = {d.id for d in decisions if d.is_unique and d.id in without_embedding}
        if not unsettled:
            return decisions, frozenset(deferred)
        deferred |= unsettled


def _match_neighbour(item: Signals, n: Neighbour, t: Thresholds) -> Match | None:
    return _best_stage(
        n.id,
        n.event_time_ms,
        same_bytes=n.sha256 is not None and n.sha256 == item.sha256,
        distance=n.hamming,
        cosine=n.cosine,
        thresholds=t,
    )


def _match_signals(item: Signals, other: Signals, t: Thresholds) -> Match | None:
    cosine = None
    if item.embedding is not None and other.embedding is not None:
        cosine = float(np.dot(item.embedding, other.embedding))
    return _best_stage(
        other.id,
        other.event_time_ms,
        same_bytes=item.sha256 == other.sha256,
        distance=hamming(item.phash, other.phash),
        cosine=cosine,
        thresholds=t,
    )


def _best_stage(
    original: str,
    original_time_ms: int,
    *,
    same_bytes: bool,
    distance: int | None,
    cosine: float | None,
    thresholds: Thresholds,
) -> Match | None:
    """The strongest stage through which an image matches one original, if any."""
    if same_bytes:
        return Match(original, original_time_ms, Kind.EXACT, 1.0)
    if distance is not None and thresholds.perceptual is not None and distance <= thresholds.perceptual:
        return Match(original, original_time_ms, Kind.PERCEPTUAL, 1.0 - distance / HASH_BITS)
    if cosine is not None and thresholds.semantic is not None and cosine >= thresholds.semantic:
        return Match(original, original_time_ms, Kind.SEMANTIC, min(1.0, cosine))
    return None
