"""The functional core: which images of a batch are duplicates, and of what.

A pure function of a batch's signals and what the index returned for them; no I/O. The worker calls it twice
per batch: once to decide, and once more after storing the new originals, with a fresh strongly-consistent
search, so that a concurrent worker's near-identical original is noticed and the later of the two yields.

Rules, in order:

1. An image is a duplicate only of an **earlier original**. "Earlier" means a smaller ``(event_time_ms, id)``,
   so the outcome does not depend on which worker saw which image first.
2. A candidate matches through one of three stages: ``exact`` (same SHA-256), ``perceptual`` (cosine of the
   64-d DCT descriptors ≥ its threshold, for a pair of views whose details agree too:
   :func:`perceptual_similarity`) or ``semantic`` (cosine of the embeddings ≥ its threshold); a threshold of
   None keeps a stage out of decisions.
3. Among the matching earlier originals the image points at the most similar one: exact beats perceptual beats
   semantic; within a stage the larger similarity wins; ties go to the earliest original.
4. The batch is compared with itself: items are taken in order, and each one that stays unique is a candidate
   for those after it. Only originals are ever candidates.
5. An index row whose id is in the batch is ignored: the batch's copy is authoritative (a redelivered original
   never matches itself; an overwritten key is decided afresh).
6. An image that stays unique *supersedes* the later originals in the index that match it: those were decided
   before this earlier image arrived and must be decided again.
7. **Guards** (:class:`Guard`): a near-duplicate stage abstains for a pair when either picture carries too
   little information for it (a solid colour, a gradient, a near-blank page, a light/dark split); such a pair
   can still match on exact bytes. Both near-duplicate stages also require the pictures' colours to agree
   (:func:`colour_distance`) and their colourful parts' shades to be what a brightness edit could make of each
   other (:func:`worker.guard.shades_apart`: a product in another shade of its colour is another product),
   unless one of them is grey (a grayscale copy is still a copy). The decision notes
   ``low-information`` when the image itself is below a stage's floor.
8. (:func:`decide_or_defer`) The worker skips the model for an image whose exact bytes an earlier indexed original
   holds. Such an image, without an embedding, can only be decided a duplicate; if it is not one after all (that
   original changed in the same batch), it is *deferred*: left out of the batch, so that it is no candidate for
   the others, and decided again with its embedding.
9. A pair listed in ``not_duplicates`` (``(image id, original id)``: what a reviewer said is no duplicate, see
   :mod:`worker.verdicts`) never matches, whatever the stages measure.
10. With ``Thresholds.semantic_suggests`` (the semantic threshold is a default nobody measured), an image whose
    best match is ``semantic`` is no duplicate: it stays unique (an original, a candidate for those after it,
    so a later exact copy of it is a duplicate of it whichever batch it lands in) and its decision carries that
    match as ``similar``, a suggestion. Exact and perceptual matches still win over it (rule 3).

Example::

    >>> a = Signals("b/a.jpg", 1, "aa", None)
    >>> copy = Signals("b/copy.jpg", 2, "aa", None)
    >>> [d.status for d in decide([copy, a], {}, Thresholds(perceptual=0.9, semantic=None))]
    ['duplicate', 'unique']
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

# Re-exported: the decision's parts that live in their own modules.
from worker.guard import GUARD as GUARD
from worker.guard import NO_GUARD as NO_GUARD
from worker.guard import Guard as Guard
from worker.guard import chroma as chroma
from worker.guard import colour_distance as colour_distance
from worker.views import BRIGHT as BRIGHT
from worker.views import BRIGHT_HALF as BRIGHT_HALF
from worker.views import DETAIL as DETAIL
from worker.views import DETAIL_REGION as DETAIL_REGION
from worker.views import REGION_COUNT as REGION_COUNT
from worker.views import REGIONS_AGREEING as REGIONS_AGREEING
from worker.views import SEARCHED_ONLY as SEARCHED_ONLY
from worker.views import UNTRIMMED as UNTRIMMED
from worker.views import UNTRIMMED_MIRROR as UNTRIMMED_MIRROR
from worker.views import UNTRIMMED_PAIRS as UNTRIMMED_PAIRS
from worker.views import VIEW_COUNT as VIEW_COUNT
from worker.views import allowed as allowed
from worker.views import combined_similarity as combined_similarity
from worker.views import detail_floor as detail_floor
from worker.views import detail_floors as detail_floors
from worker.views import detail_similarities as detail_similarities
from worker.views import details_agree as details_agree
from worker.views import pair_kind as pair_kind
from worker.views import perceptual_similarity as perceptual_similarity
from worker.views import similarity as similarity
from worker.views import views_of as views_of

#: Width of a perceptual descriptor: the 8×8 lowest DCT coefficients of a 32×32 grey view (the DC slot is 0).
DESCRIPTOR_DIM = 64

Vector = npt.NDArray[np.float32]


#: A view's details: its 32×32 fine structure as signed bytes (:func:`worker.fingerprint.details`).
DETAIL_SIZE = 1024
Details = npt.NDArray[np.int8]


def no_views() -> Vector:
    """An empty stack of descriptors (a look without its other views)."""
    return np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32)


def no_details() -> Details:
    """An empty stack of details (not measured)."""
    return np.zeros((0, DETAIL_SIZE), dtype=np.int8)


class Kind(StrEnum):
    """How a duplicate was recognised, strongest first."""

    EXACT = "exact"
    PERCEPTUAL = "perceptual"
    SEMANTIC = "semantic"


class Status(StrEnum):
    UNIQUE = "unique"
    DUPLICATE = "duplicate"
    SIMILAR = "similar"  # an outcome only: a suggested semantic match (rule 10); the decision itself is unique
    ERROR = "error"


_KIND_RANK = {Kind.EXACT: 0, Kind.PERCEPTUAL: 1, Kind.SEMANTIC: 2}


@dataclass(frozen=True, slots=True, eq=False)
class Look:
    """What the near-duplicate stages know of a picture besides its whole-picture descriptor (see
    :mod:`worker.fingerprint`): the other views' descriptors (``variants``, one row each: the mirror first, then
    :data:`REGION_COUNT` regions, the brightened picture, the untrimmed one (:data:`UNTRIMMED`) and its mirror), the
    information behind the descriptor, the share of its variance one light/dark split explains, its texture, its
    colour layout and the ``details`` of every view (one row each, the whole picture first, then as ``variants``;
    empty: not known, and every pair counts as confirmed)."""

    variants: Vector = field(default_factory=no_views)
    information: float = 0.0
    split: float = 0.0
    texture: float = 0.0
    colour: bytes = b""
    details: Details = field(default_factory=no_details)


@dataclass(frozen=True, slots=True)
class Signals:
    """What the worker computed for one image. ``id`` is ``"bucket/key"``. ``dct`` is the whole picture's
    perceptual descriptor (a unit vector; None: not computed, the perceptual stage has nothing to compare).
    ``look`` None: only the whole-picture descriptor is known (the guard and colour check then let every pair
    through)."""

    id: str
    event_time_ms: int
    sha256: str
    dct: Vector | None = field(default=None, compare=False)
    embedding: Vector | None = field(default=None, compare=False)
    look: Look | None = field(default=None, compare=False)

    @property
    def order(self) -> tuple[int, str]:
        return (self.event_time_ms, self.id)


@dataclass(frozen=True, slots=True)
class Neighbour:
    """An original the index returned for one image, with whatever it measured about the pair.

    ``sha256`` is the original's digest (the exact stage compares it), ``perceptual`` (the similarity of
    :func:`combined_similarity`) is set when the perceptual search found it and ``cosine`` when the semantic
    search did; the index adapter merges the three lookups into one Neighbour per id.
    """

    id: str
    event_time_ms: int
    sha256: str | None = None
    perceptual: float | None = None
    cosine: float | None = None
    look: Look | None = None

    @property
    def order(self) -> tuple[int, str]:
        return (self.event_time_ms, self.id)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``perceptual``: smallest descriptor similarity that still matches (:func:`perceptual_similarity`);
    ``semantic``: smallest embedding cosine. None switches a stage out of decisions (it is still computed and
    stored). ``guard``: see :class:`Guard`. ``detail``: smallest cosine of two views' details for their
    descriptors' similarity to count (None: no confirmation), ``detail_region`` the same for a whole picture
    against a region (None: as ``detail``; see :func:`detail_floor`). ``semantic_suggests``: a semantic match only
    suggests (rule 10), it makes no duplicate."""

    perceptual: float | None
    semantic: float | None
    guard: Guard = GUARD
    detail: float | None = DETAIL
    semantic_suggests: bool = False
    detail_region: float | None = DETAIL_REGION


@dataclass(frozen=True, slots=True)
class Match:
    original: str
    original_time_ms: int
    kind: Kind
    score: float  # similarity in [0, 1]: exact 1.0, perceptual and semantic their cosine (4 places)

    def rank(self, original_order: tuple[int, str]) -> tuple[int, float, tuple[int, str]]:
        return (_KIND_RANK[self.kind], -self.score, original_order)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict for one image. ``supersedes`` lists later originals that must be decided again. ``similar``:
    on a unique image, the semantic match it only resembles (rule 10)."""

    id: str
    status: Status
    match: Match | None = None
    supersedes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. "low-information"
    similar: Match | None = None

    @property
    def is_unique(self) -> bool:
        return self.status is Status.UNIQUE


LOW_INFORMATION = "low-information"
#: Decimal places of a match's score (``dedup-score`` is written with as many).
SCORE_DIGITS = 4


def _score(similarity: float) -> float:
    """A similarity as a match's score: in [0, 1] and rounded to :data:`SCORE_DIGITS` places, as tags and the
    quarantine's metadata store it, so that a redelivery reads back the very outcome it decided."""
    return round(min(1.0, max(0.0, similarity)), SCORE_DIGITS)


def decide(
    batch: Sequence[Signals],
    neighbours: Mapping[str, Iterable[Neighbour]],
    thresholds: Thresholds,
    not_duplicates: Container[tuple[str, str]] = (),
) -> list[Decision]:
    """Decide every image of ``batch``; the result is in the batch's order.

    ``neighbours`` maps an image's id to the originals the index returned for it (missing ids: none).
    Several items with the same id (a replayed event in the same batch) share one decision, made for the
    latest of them. ``not_duplicates`` holds ``(image id, original id)`` pairs that never match (rule 9).
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
        notes = low_information(item, thresholds)
        best = min(earlier, key=lambda pair: pair[0].rank(pair[1]))[0] if earlier else None
        if best is not None and not (thresholds.semantic_suggests and best.kind is Kind.SEMANTIC):
            decided[item.id] = Decision(item.id, Status.DUPLICATE, best, notes=notes)
        else:
            supersedes = tuple(sorted(set(later)))
            decided[item.id] = Decision(item.id, Status.UNIQUE, supersedes=supersedes, notes=notes, similar=best)
            originals.append(item)
    return [decided[item.id] for item in batch]


def decide_or_defer(
    batch: Sequence[Signals],
    neighbours: Mapping[str, Iterable[Neighbour]],
    thresholds: Thresholds,
    not_duplicates: Container[tuple[str, str]] = (),
) -> tuple[list[Decision], frozenset[str]]:
    """:func:`decide` for a batch in which some images have no embedding yet (rule 8). Returns the decisions of
    the images that are decided, in the batch's order, and the ids of those deferred until they have one.

        >>> a = Signals("b/a.jpg", 1, "aa", None)
        >>> decisions, deferred = decide_or_defer([a], {}, Thresholds(perceptual=0.9, semantic=None))
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


def low_information(item: Signals, t: Thresholds) -> tuple[str, ...]:
    """``("low-information",)`` when an enabled near-duplicate stage abstains for this image whatever it is
    compared with."""
    weak = (t.perceptual is not None and not t.guard.perceptual_ok(item.look)) or (
        t.semantic is not None and not t.guard.semantic_ok(item.look)
    )
    return (LOW_INFORMATION,) if weak else ()


def abstaining_stages(item: Signals, t: Thresholds) -> list[Kind]:
    """The enabled near-duplicate stages whose guard keeps this image out (for the by-stage counter)."""
    out = []
    if t.perceptual is not None and not t.guard.perceptual_ok(item.look):
        out.append(Kind.PERCEPTUAL)
    if t.semantic is not None and not t.guard.semantic_ok(item.look):
        out.append(Kind.SEMANTIC)
    return out


def _match_neighbour(item: Signals, n: Neighbour, t: Thresholds) -> Match | None:
    return _best_stage(
        n.id,
        n.event_time_ms,
        same_bytes=n.sha256 is not None and n.sha256 == item.sha256,
        perceptual=n.perceptual,
        cosine=n.cosine,
        looks=(item.look, n.look),
        thresholds=t,
    )


def _match_signals(item: Signals, other: Signals, t: Thresholds) -> Match | None:
    cosine = None
    if item.embedding is not None and other.embedding is not None:
        cosine = float(np.dot(item.embedding, other.embedding))
    # The descriptors alone first: details only ever take pairs of views away, so a pair of pictures whose closest
    # views fall short of the threshold without them falls short with them too, and most batch mates are unrelated.
    perceptual = perceptual_similarity(item, other)
    if perceptual is not None and t.perceptual is not None and perceptual >= t.perceptual and t.detail is not None:
        perceptual = perceptual_similarity(item, other, t.detail, t.detail_region)
    return _best_stage(
        other.id,
        other.event_time_ms,
        same_bytes=item.sha256 == other.sha256,
        perceptual=perceptual,
        cosine=cosine,
        looks=(item.look, other.look),
        thresholds=t,
    )


def _best_stage(
    original: str,
    original_time_ms: int,
    *,
    same_bytes: bool,
    perceptual: float | None,
    cosine: float | None,
    looks: tuple[Look | None, Look | None],
    thresholds: Thresholds,
) -> Match | None:
    """The strongest stage through which an image matches one original, if any: exact bytes always count; a
    near-duplicate stage only when both pictures pass its guard and their colours agree."""
    if same_bytes:
        return Match(original, original_time_ms, Kind.EXACT, 1.0)
    guard = thresholds.guard
    # The colour check comes last: it costs more than the comparisons, and most neighbours fail those anyway.
    if (
        perceptual is not None
        and thresholds.perceptual is not None
        and perceptual >= thresholds.perceptual
        and all(guard.perceptual_ok(look) for look in looks)
    ):
        if not guard.colours_agree(*looks):
            return None  # nor semantically: a colourway is another picture
        return Match(original, original_time_ms, Kind.PERCEPTUAL, _score(perceptual))
    if (
        cosine is not None
        and thresholds.semantic is not None
        and cosine >= thresholds.semantic
        and all(guard.semantic_ok(look) for look in looks)
        and guard.colours_agree(*looks)
    ):
        return Match(original, original_time_ms, Kind.SEMANTIC, _score(cosine))
    return None
