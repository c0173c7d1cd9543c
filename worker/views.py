"""How alike two pictures' views are: which descriptors are compared with which (whole, mirror, regions,
brightened, untrimmed), their similarities and their details' (:func:`perceptual_similarity`). Part of the decision
(:mod:`worker.decision`, which re-exports these names); the index's perceptual search pairs views the same way
(:mod:`worker.hash_rows`).

    >>> pair_kind(1, 0), combined_similarity(0.5, {2: 0.99, 5: 0.96})
    ('view', 0.96)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from worker.alignment import ALIGN_FROM, aligned_similarity

if TYPE_CHECKING:
    from worker.decision import Details, Signals, Vector

#: Regions described besides the whole picture (:data:`worker.fingerprint.REGIONS`); a look's variants are the
#: mirror, then the regions, then the brightened picture.
REGION_COUNT = 10
#: Variant number of the picture brightened with clipping (:data:`worker.fingerprint.BRIGHTER`).
BRIGHT = 2 + REGION_COUNT
#: Variant number of the whole picture as uploaded, borders kept (variant 0 has them trimmed): where to trim an
#: object on a plain background (clip art, an icon, a product shot) is found to a fraction of a pixel, and a
#: re-encoded or resized copy's fraction differs enough to put its details out of step with its source's.
UNTRIMMED = BRIGHT + 1
#: ... and its mirror, searched with and never stored, as the mirror (1) of the trimmed picture is.
UNTRIMMED_MIRROR = UNTRIMMED + 1
#: Variant number of the picture brightened half as much in log gain (:data:`worker.fingerprint.BRIGHTER_HALF`): the
#: middle rung of a ladder from the untrimmed view to the brightened one, taken where the two ends lie far apart.
BRIGHT_HALF = UNTRIMMED_MIRROR + 1
#: Views per picture, in variant order: whole, mirror, regions, brightened, untrimmed, untrimmed mirror, half
#: brightened.
VIEW_COUNT = BRIGHT_HALF + 1
#: The brightened views, each compared with the others' whole and untrimmed views, never with each other.
RUNGS = (BRIGHT, BRIGHT_HALF)
#: Variants searched with and never stored: the two mirrors.
SEARCHED_ONLY = (1, UNTRIMMED_MIRROR)
#: The "view" pairs besides the whole picture against any view, as (one picture's variant, the other's): the
#: untrimmed picture, or its mirror, against the other's untrimmed picture, the untrimmed picture against the
#: other's brightened one either way round (brightened as uploaded: see :mod:`worker.fingerprint`), and the
#: untrimmed picture against a region of the other either way round (the regions are the uploaded picture's, so a
#: zoomed or cropped copy of a picture with a plain background is one of its source's regions as uploaded, not as
#: trimmed) (:func:`pair_kind`).
UNTRIMMED_PAIRS = (
    (UNTRIMMED, UNTRIMMED),
    (UNTRIMMED_MIRROR, UNTRIMMED),
    (UNTRIMMED, UNTRIMMED_MIRROR),
    (UNTRIMMED, BRIGHT),
    (BRIGHT, UNTRIMMED),
    (UNTRIMMED, BRIGHT_HALF),
    (BRIGHT_HALF, UNTRIMMED),
    *((UNTRIMMED, k) for k in range(2, BRIGHT)),
    *((k, UNTRIMMED) for k in range(2, BRIGHT)),
)
#: How many same-region pairs must be within the threshold for a region match (:func:`pair_kind`).
REGIONS_AGREEING = 2
#: Two views' details must agree this well for their descriptors' similarity to count (``Thresholds.detail``).
DETAIL = 0.98
#: ... and a whole picture and a region of the other (:func:`detail_floor`): a zoomed, cropped or bordered copy is
#: a region only up to the region's box, and its details, the finest structure, feel the misfit first. Chosen on
#: the corpus's tuning fold (``python -m tooling.eval.tail --fold tune``): the lowest value that leaves none of its
#: 19M guarded negative pairs matching at 0.90 (0.93–0.95 let one through); 10 % zoom recall there 0.53 → 0.65.
DETAIL_REGION = 0.96
#: ... and at least this for a whole picture and the other's brightened view: brightening clips the light parts
#: of a picture flat, and what is left of two different pictures can agree more closely (one pattern in light
#: and dark, drawn twice: 0.9805). Chosen on the tuning fold: the lowest on a 0.005 grid that leaves none of its
#: guarded negative pairs matching (the next is at 0.977); +20 % brightness recall there 0.956 → 0.953. The
#: brightened view is taken with the untrimmed one as their closest mix (:func:`mixed`), which brings none of those
#: pairs closer.
DETAIL_BRIGHT = 0.985
#: Signed-byte units per grey level of a quiet view's details (:func:`worker.fingerprint.details`; the others are
#: scaled to a peak of ±127): a view whose details stay within 7.9 grey levels of flat keeps its amplitude. Rows
#: stored before all have a peak of 127 and read as loud, which is how they were compared.
QUIET_GAIN = 16.0
#: How much a moderate re-encode moves a view's details, grey levels (root mean square): the 95th percentile of
#: that change on the tuning fold's views quieter than 4 grey levels, for JPEG q95 and q75, PNG↔JPEG and WebP.
#: Where two views' details are hardly louder than this, their cosine is held to what the noise leaves
#: (:func:`noise_floors`), not to ``detail``: a dark gradient wallpaper or a faint pattern has fine structure of a
#: third of a grey level, and re-encoding alone took its details to 0.94–0.97.
DETAIL_NOISE = 0.3


def similarity(a: Vector, b: Vector) -> float:
    """Cosine of two perceptual descriptors (unit vectors): 1 for the same picture, about 0 for unrelated ones."""
    return float(np.dot(a, b))


def pair_kind(query_variant: int, stored_variant: int) -> str | None:
    """How a descriptor of an image may be compared with a stored descriptor of an original. Variant 0 is the
    whole picture, 1 its mirror (searched with, never stored), 2… the regions, :data:`BRIGHT` the brightened
    picture:

    * ``"view"``: whole ↔ whole, mirror → whole (a mirrored copy), whole ↔ region either way (a zoomed or cropped
      copy is a region of its source), whole or untrimmed ↔ brightened either way (a brightened copy's clipped
      highlights; the brightened view is of the picture as uploaded), untrimmed ↔ untrimmed, untrimmed ↔ whole
      and untrimmed ↔ region either way (:data:`UNTRIMMED`: a copy of a
      picture with a plain background whose trimmed views fell out of step, or a zoomed or cropped one: the
      regions are the picture's as uploaded), untrimmed mirror → untrimmed or whole (a mirrored such copy): one
      such pair at or above the threshold is a match;
    * ``"region"``: region k ↔ region k (an overlay or a caption hides one part of the picture, the rest agrees):
      it counts only when :data:`REGIONS_AGREEING` regions agree (one alone lets same-layout screenshots match).

        >>> pair_kind(1, 0), pair_kind(1, 3), pair_kind(3, 3), pair_kind(3, 4), pair_kind(BRIGHT, BRIGHT)
        ('view', None, 'region', None, None)
        >>> pair_kind(UNTRIMMED, UNTRIMMED), pair_kind(UNTRIMMED, 0), pair_kind(UNTRIMMED, 3), pair_kind(1, UNTRIMMED)
        ('view', 'view', 'view', None)
        >>> pair_kind(3, UNTRIMMED), pair_kind(UNTRIMMED, BRIGHT), pair_kind(UNTRIMMED_MIRROR, 3)
        ('view', 'view', None)
        >>> pair_kind(UNTRIMMED_MIRROR, UNTRIMMED), pair_kind(UNTRIMMED_MIRROR, 0), pair_kind(UNTRIMMED_MIRROR, 2)
        ('view', 'view', None)
        >>> pair_kind(BRIGHT_HALF, 0), pair_kind(UNTRIMMED, BRIGHT_HALF), pair_kind(BRIGHT_HALF, BRIGHT_HALF)
        ('view', 'view', None)
    """
    if stored_variant in SEARCHED_ONLY or (query_variant in RUNGS and stored_variant in RUNGS):
        return None
    if (query_variant, stored_variant) in UNTRIMMED_PAIRS:
        return "view"
    if stored_variant == 0 or query_variant == 0:
        return "view"
    return "region" if query_variant == stored_variant else None


def detail_floor(query_variant: int, stored_variant: int, detail: float, region: float | None) -> float:
    """The details' threshold of a pair of views: ``region`` (when set) for a whole picture, trimmed or as
    uploaded, against a region of the other, either way round (a geometric edit: zoom, crop, border), at least
    :data:`DETAIL_BRIGHT` for a whole picture against one of the other's brightened views (:data:`RUNGS`), else
    ``detail`` (views that cover the same part of both pictures).

        >>> detail_floor(0, 0, 0.98, 0.9), detail_floor(0, 2, 0.98, 0.9), detail_floor(3, 0, 0.98, 0.9)
        (0.98, 0.9, 0.9)
        >>> detail_floor(3, 3, 0.98, 0.9), detail_floor(0, 2, 0.98, None), detail_floor(UNTRIMMED, 2, 0.98, 0.9)
        (0.98, 0.98, 0.9)
        >>> detail_floor(BRIGHT, 0, 0.98, 0.9), detail_floor(0, BRIGHT, 0.99, 0.9)
        (0.985, 0.99)
        >>> detail_floor(BRIGHT_HALF, 0, 0.98, 0.9), detail_floor(BRIGHT_HALF, BRIGHT, 0.98, 0.9)
        (0.985, 0.98)
    """
    if (query_variant in RUNGS) != (stored_variant in RUNGS):
        return max(detail, DETAIL_BRIGHT)
    regional = 2 <= query_variant < BRIGHT or 2 <= stored_variant < BRIGHT
    whole = query_variant in (0, UNTRIMMED) or stored_variant in (0, UNTRIMMED)
    return region if region is not None and regional and whole and query_variant != stored_variant else detail


@cache  # a few shapes and thresholds; every compared pair of pictures asks again
def detail_floors(views_a: int, views_b: int, detail: float, region: float | None) -> npt.NDArray[np.float32]:
    """:func:`detail_floor` of every pair of views (``views_a`` × ``views_b``), read-only."""
    out = np.array(
        [[detail_floor(a, b, detail, region) for b in range(views_b)] for a in range(views_a)], dtype=np.float32
    )
    out.flags.writeable = False
    return out


def amplitudes(details: Details) -> npt.NDArray[np.float64]:
    """Each view's details' amplitude (root mean square, grey levels) where it is known (a quiet view, scaled by
    :data:`QUIET_GAIN`), else infinity.

        >>> amplitudes(np.array([[16, -16] * 512, [127, -127] * 512], dtype=np.int8))
        array([ 1., inf])
    """
    out = np.full(len(details), np.inf)
    quiet = np.abs(details.astype(np.int16)).max(axis=1) < 127
    if quiet.any():
        out[quiet] = details[quiet].astype(np.float64).std(axis=1) / QUIET_GAIN
    return out


def noise_floors(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The cosine two views of amplitudes ``a`` and ``b`` (:func:`amplitudes`) are sure to reach when they are one
    picture but for :data:`DETAIL_NOISE` of re-encoding noise, for every pair: 1 − noise² / (2ab) (the cosine of
    two vectors of lengths ``a`` and ``b``, ``noise`` apart). A pair of views is confirmed at the lower of this
    and its :func:`detail_floor`; 1 where either amplitude is not known.

        >>> noise_floors(np.array([0.3, 1.5]), np.array([0.3, np.inf])).round(3)
        array([[0.5, 1. ],
               [0.9, 1. ]])
    """
    known = np.isfinite(a)[:, None] & np.isfinite(b)[None, :]
    product = np.outer(np.where(np.isfinite(a), a, 1.0), np.where(np.isfinite(b), b, 1.0))
    with np.errstate(divide="ignore"):
        out: npt.NDArray[np.float64] = np.where(known, 1.0 - DETAIL_NOISE**2 / (2.0 * product), 1.0)
    return out


def pair_floor(
    query_variant: int, stored_variant: int, detail: float, region: float | None, a: Details, b: Details
) -> float:
    """The details' threshold of one pair of views whose details are ``a`` and ``b``: the lower of their
    :func:`detail_floor` and :func:`noise_floors` (what the index's confirmation of one stored row asks)."""
    noise = float(noise_floors(amplitudes(a[None, :]), amplitudes(b[None, :]))[0, 0])
    return min(detail_floor(query_variant, stored_variant, detail, region), noise)


def details_agree(query_variant: int, stored_variant: int, plain: float, floor: float, a: Details, b: Details) -> bool:
    """Whether two views' details (``a``, ``b``, whose cosine is ``plain``) agree at ``floor``: ``plain`` does, or,
    for the two whole views, :func:`worker.alignment.aligned_similarity` does when ``plain`` is at least
    :data:`~worker.alignment.ALIGN_FROM` (their trims measured a fraction of a pixel apart).

        >>> fine = np.arange(1024).astype(np.int8)
        >>> details_agree(0, 0, 0.99, 0.98, fine, fine), details_agree(3, 0, 0.5, 0.98, fine, fine)
        (True, False)
    """
    if plain >= floor:
        return True
    if query_variant != 0 or stored_variant != 0 or plain < ALIGN_FROM:
        return False
    return aligned_similarity(a, b) >= floor


def allowed(query_variant: int, stored_variant: int) -> bool:
    """Whether the search may pair these two variants at all (see :func:`pair_kind`)."""
    return pair_kind(query_variant, stored_variant) is not None


def combined_similarity(view: float | None, regions: Mapping[int, float]) -> float | None:
    """The similarity at which two pictures match: the closest ``"view"`` pair, or the :data:`REGIONS_AGREEING`-th
    closest region pair (``regions``: region variant → similarity), whichever is larger.

        >>> combined_similarity(0.5, {2: 0.99, 5: 0.96, 7: 0.1})
        0.96
    """
    candidates = [] if view is None else [view]
    agreeing = sorted(regions.values(), reverse=True)
    if len(agreeing) >= REGIONS_AGREEING:
        candidates.append(agreeing[REGIONS_AGREEING - 1])
    return max(candidates) if candidates else None


def views_of(item: Signals) -> Vector | None:
    """The image's descriptors by variant number: whole, mirror, regions, brightened, untrimmed, untrimmed mirror
    (only the whole without a look; None without a descriptor)."""
    if item.dct is None:
        return None
    if item.look is None or not len(item.look.variants):
        return item.dct[None, :]
    return np.concatenate([item.dct[None, :], item.look.variants])


def detail_similarities(a: Details, b: Details) -> npt.NDArray[np.float32]:
    """Cosines of every row of ``a`` with every row of ``b`` (two stacks of details)."""
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    na, nb = np.linalg.norm(fa, axis=1), np.linalg.norm(fb, axis=1)
    out: npt.NDArray[np.float32] = ((fa @ fb.T) / np.maximum(np.outer(na, nb), 1e-9)).astype(np.float32)
    return out


#: The views compared with the other picture's brightened ones as :func:`mixed`: the whole and the untrimmed.
MIXED = (0, UNTRIMMED)


def mixed(to: Sequence[float], among: Sequence[Sequence[float]]) -> float:
    """The cosine of a view with the closest mix (weights ≥ 0) of another picture's ladder of views (its untrimmed
    view and brightened ones, :func:`ladder`), from the view's cosines with each (``to``) and theirs with each other
    (``among``): a copy brightened less than :data:`~worker.fingerprint.BRIGHTER` clips less than the brightened
    view, and its details lie between the picture's own (nothing clipped) and the brightened view's (more clipped),
    closer to the half-brightened view's where there is one. Non-negative least squares over every subset of the
    ladder (at most three views: seven small solves).

        >>> round(mixed([0.8, 0.8], [[1, 0.6], [0.6, 1]]), 3), mixed([0.9, 0.2], [[1, 0.5], [0.5, 1]])
        (0.894, 0.9)
    """
    best = max(to)
    subsets = (subset for size in range(2, len(to) + 1) for subset in combinations(range(len(to)), size))
    for subset in subsets:
        weights = _solve([[among[r][c] for c in subset] for r in subset], [to[r] for r in subset])
        if weights is not None and min(weights) >= 0:
            best = max(best, math.sqrt(max(sum(w * to[r] for w, r in zip(weights, subset, strict=True)), 0.0)))
    return best


def _solve(gram: list[list[float]], rhs: list[float]) -> list[float] | None:
    """The solution of a 2×2 or 3×3 system by Cramer's rule, or None when it is (nearly) singular."""
    if len(rhs) == 2:
        (a, b), (c, d) = gram
        det = a * d - b * c
        if det < 1e-6:
            return None
        return [(rhs[0] * d - b * rhs[1]) / det, (a * rhs[1] - c * rhs[0]) / det]
    det = _det3(gram)
    if det < 1e-9:
        return None
    columns = [[[*row[:i], value, *row[i + 1 :]] for row, value in zip(gram, rhs, strict=True)] for i in range(3)]
    return [_det3(m) / det for m in columns]


def _det3(m: list[list[float]]) -> float:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )


def ladder(details: Details) -> list[int]:
    """A picture's ladder (variant numbers): its untrimmed view, then each brightened view (:data:`RUNGS`) that it
    has and that is not the untrimmed view again (nothing to clip; a picture stored before the half rung has
    none)."""
    return [UNTRIMMED] + [
        rung for rung in RUNGS if len(details) > rung and not np.array_equal(details[rung], details[UNTRIMMED])
    ]


def mixed_details(view: Details, rungs: Sequence[Details] | Details) -> float:
    """:func:`mixed` of one view's details against another picture's ladder's (a list of views, or a stack: what
    the index's confirmation of one stored row asks)."""
    stacked = np.stack(list(rungs))
    cosines = detail_similarities(np.concatenate([view[None, :], stacked]), stacked).tolist()
    return mixed(cosines[0], cosines[1:])


def brightness_mixed(plain: npt.NDArray[np.float32], a: Details, b: Details) -> npt.NDArray[np.float32]:
    """``plain`` (the cosines of every view's details of ``a`` with every view's of ``b``) with each whole or
    untrimmed view against the other's brightened ones taken as :func:`mixed`: the other's ladder together."""
    if min(len(a), len(b)) <= UNTRIMMED:
        return plain
    out = plain.copy()
    for that, cosines, target in ((b, plain, out), (a, plain.T, out.T)):  # a's views against b's ladder, and back
        steps = ladder(that)
        among = detail_similarities(that[steps], that[steps]).tolist()
        for view in MIXED:
            value = mixed([float(cosines[view, s]) for s in steps], among)
            for rung in steps[1:]:  # a rung that repeats the untrimmed view is no row: it keeps that view's cosine
                target[view, rung] = value
    return out


def perceptual_similarity(
    a: Signals, b: Signals, detail: float | None = None, detail_region: float | None = None
) -> float | None:
    """:func:`combined_similarity` over every pair of descriptors :func:`pair_kind` allows, either way round: what
    the index search finds for ``a`` among stored ``b`` (and ``b`` among stored ``a``). With ``detail``, a pair of
    views whose details (:attr:`Look.details`) are less alike than that does not count (``detail_region`` for a
    whole picture against a region, :func:`detail_floor`). None when either has no descriptor."""
    va, vb = views_of(a), views_of(b)
    if va is None or vb is None:
        return None
    # The pairs pair_kind allows either way round, without trying the others: the whole picture of either side
    # against every descriptor of the other and the untrimmed picture (or its mirror) against the other's ("view"),
    # and region k against region k ("region").
    sims: Vector = va @ vb.T
    da, db = _details(a, len(va)), _details(b, len(vb))
    if detail is not None and da is not None and db is not None:
        floors = np.minimum(
            detail_floors(len(va), len(vb), detail, detail_region), noise_floors(amplitudes(da), amplitudes(db))
        )
        plain = brightness_mixed(detail_similarities(da, db), da, db)
        agree = plain >= floors
        agree[0, 0] = details_agree(0, 0, float(plain[0, 0]), float(floors[0, 0]), da[0], db[0])
        sims = np.where(agree, sims, -1.0).astype(np.float32)
    view = max(float(sims[0].max()), float(sims[:, 0].max()))
    view = max([view, *(float(sims[i, j]) for i, j in UNTRIMMED_PAIRS if i < len(va) and j < len(vb))])
    regions = {k: float(sims[k, k]) for k in range(2, min(len(va), len(vb), BRIGHT))}
    return combined_similarity(view, regions)


def _details(item: Signals, views: int) -> Details | None:
    """The item's details, one per view of :func:`views_of`, or None when they are not known."""
    if item.look is None or len(item.look.details) < views:
        return None
    return item.look.details[:views]
