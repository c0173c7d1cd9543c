"""What the near-duplicate stages know of a picture besides its bytes: descriptors, information and colour.

One pass over a small thumbnail of the decoded picture gives a :class:`Fingerprint`:

* ``dct`` — the perceptual descriptor of the picture **after trimming uniform borders** (letterbox bars,
  passe-partout, a white page margin; a frame and the mat inside it), so a bordered copy is described like its
  source: the borders are found on the thumbnail to a fraction of a pixel (:func:`worker.borders.trim`), cut off
  the picture itself, and the thumbnail made again from what is left (:data:`TRIM_PASSES` times at most). It is
  pHash's own
  measurement — the 8×8 lowest DCT coefficients of a 32×32 grey thumbnail — without pHash's last step: instead
  of one bit per coefficient (above or below their median) it keeps the values, median-centred, the DC term
  dropped, scaled to unit length, and two pictures are compared by cosine. A coefficient that sits near the
  median weighs little instead of flipping a bit at random, which is what made dark, low-contrast pictures and
  their re-encodes land 14–24 bits apart;
* ``mirror`` — the same descriptor of the left-right mirrored picture, searched too, so a mirrored copy is found;
* ``regions`` — descriptors of sub-rectangles of the picture **as uploaded** (:data:`REGIONS`: central ones at
  a few scales and strips without one side), stored and searched against whole and untrimmed pictures in both
  directions, so a zoomed or cropped copy matches its source whichever arrives first: a crop cuts the uploaded
  picture, and one of clip art whose object comes closer to an edge than the crop cuts into the object on one
  side and leaves background on the other, which no region of the trimmed picture is;
* ``untrimmed`` — the descriptor of the whole picture as uploaded, borders kept, stored and searched against
  the untrimmed and the whole views of others: where to trim an object on a plain background (clip art, an
  icon) is found to a fraction of a pixel, and a re-encoded or resized copy's fraction can differ enough to put
  its details out of step with its source's; untrimmed, both are the same picture. Its mirror is searched too.
  They are the whole descriptor and the mirror themselves (no row of their own) when nothing was trimmed;
* ``bright`` — the descriptor of the picture as uploaded (borders kept) with every channel brightened by
  :data:`BRIGHTER` and clipped, stored and searched against whole and untrimmed pictures both ways, so a
  brightened copy whose saturated colours or near-white areas clipped still matches; it is the untrimmed
  descriptor itself when brightening leaves it within :data:`BRIGHT_SAME` (a picture with nothing to clip, most
  photos). Untrimmed, because brightening moves the trim: an icon's faint shadow clips to white with its
  background, and a brightened copy trimmed two thumbnail pixels further in than its source's brightened view
  was (details 0.67–0.92 instead of 0.99);
* ``bright_half`` — where brightening clips most of the picture (the brightened view's details far from the
  untrimmed one's, :data:`LADDER_BELOW`), the same at :data:`BRIGHTER_HALF`: the middle rung of a ladder whose
  closest mix meets a copy brightened by less than :data:`BRIGHTER` (:func:`worker.views.mixed`); elsewhere the
  untrimmed view again, which is neither stored nor searched;
* ``details`` — each view's fine structure: the 32×32 view minus its :data:`DETAIL_BOX`-pixel box blur, as
  1,024 signed bytes. The descriptors see the low frequencies only, where two screenshots of one application
  layout, or two pages of one template, are nearly the same picture (cosine 0.998); their cards, labels and lines
  are here. A descriptor match counts only when the same two views' details agree too
  (:func:`worker.decision.perceptual_similarity`). A quiet view's details (within 7.9 grey levels of flat) keep
  their amplitude, :data:`~worker.views.QUIET_GAIN` units a grey level, so that a comparison knows when
  re-encoding noise is as large as the structure (:func:`worker.views.noise_floors`);
* ``information`` — how much structure stands behind the descriptor (:func:`information`): the median distance,
  in grey levels, of the 64 DCT coefficients from their median, or a share of the 90th percentile of the 63 AC
  coefficients' distances when that is larger. A solid colour, a smooth gradient, a near-blank scan or a
  light/dark split has almost every coefficient at the median, so its descriptor is noise that any other such
  picture shares; a symmetric design (a disc, a cross, a saltire) leaves most coefficients at 0 too, but a few
  of them far from it. Below :data:`worker.decision.Guard` floors a stage abstains;
* ``split`` — the share of the whole view's variance one light/dark split explains (Otsu's effectiveness): a
  two-tone picture's bits encode where the split runs, not what lies on either side (czkawka PR #2059);
* ``texture`` — the share of the trimmed thumbnail's pixels whose 3×3 neighbourhood varies by more than
  :data:`FLAT_RANGE` grey levels: a mostly empty picture (a line of text on white, a scan with a mark, a
  transparent overlay) has little, whatever its edges' contrast; both guards use it, since blank and
  near-uniform pictures also sit close together in embedding space. ``information`` and ``texture`` are both
  measured at the picture's best exposure (:func:`exposure`): a darkened copy carries what its source did;
* ``colour`` — a coarse layout of chromaticity (a 4×4 grid of brightness-free opponent colours), which tells two
  colourways of one layout apart while a grayscale copy, which has none, still matches (see
  :func:`worker.decision.colour_distance`), then the colourful parts' shade (:func:`worker.colours.shade`: their
  level and saturation), which tells a product in a lighter, darker or paler shade of one colour from its
  brightened copy (:func:`worker.guard.shades_apart`).

    >>> fp = fingerprint(picture)
    >>> similarity(fp.dct, fingerprint(ImageOps.mirror(picture)).mirror) > 0.99
    True

Everything is computed from one thumbnail (:class:`worker.thumbnails.Work`), the fifteen 32×32 views by batched
matrix products, and a sixteenth, the half-brightened one, where it is taken (``python -m tooling.eval.cost``
times the hash stage against a single pHash or an earlier version).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
from PIL import Image

from worker.borders import median, refined, scaled, trim
from worker.colours import COLOUR_GRID, SHADE_GRID, colour_layout, shade
from worker.decision import (
    BRIGHT,
    BRIGHT_HALF,
    DESCRIPTOR_DIM,
    REGION_COUNT,
    UNTRIMMED,
    UNTRIMMED_MIRROR,
    Look,
    Vector,
    detail_similarities,
    similarity,
)
from worker.thumbnails import DCT_SIDE, Work, thumbs32
from worker.views import QUIET_GAIN

HASH_SIDE = 8  # 8×8 low frequencies → a 64-d descriptor
FLAT_RANGE = 3.0
#: The brightened variant multiplies every channel by this and clips, as an exposure or brightness edit does:
#: a brightened copy's clipped highlights (saturated colours, near-white areas) change its grey levels unevenly,
#: which no hash of the unbrightened picture sees. Chosen with ``python -m tooling.eval`` between the harness's
#: two brightening steps (+20 %, +40 %), not at either. Brightened before the thumbnail averages
#: (:meth:`worker.thumbnails.Work.brightened`), as the edit brightens: clipping then averaging is not averaging
#: then clipping.
BRIGHTER = 1.25
#: At or above this similarity to the untrimmed picture's descriptor and details, brightening changed nothing that
#: matters (the picture has nothing to clip) and the variant is the untrimmed view itself: a wobble would only bring
#: unrelated pictures of one layout closer, and the index stores no row for it. Clipping that leaves the
#: descriptor but not the details keeps the row: a brightened copy is confirmed by it.
BRIGHT_SAME = 0.98
#: ... and this for its details, which clipping changes first (a brightened copy's details are compared at 0.98).
BRIGHT_SAME_DETAILS = 0.999
#: The half-brightened view (variant :data:`~worker.views.BRIGHT_HALF`) multiplies every channel by this: halfway
#: between the picture and the brightened view in log gain (√1.25 ≈ 1.118). A copy brightened by less than
#: :data:`BRIGHTER` is compared with the closest mix of its source's untrimmed and brightened views
#: (:func:`worker.views.mixed`); where most of a light picture clips (86–94 % of an icon's pixels), the mix of the
#: two ends is too far from what a +20 % copy shows (details 0.95–0.98 where 0.985 is asked), and a middle rung
#: brings it within reach. Judged on the tuning fold: +20 % misses 15 → 13, no negative pair closer.
BRIGHTER_HALF = 1.12
#: The half-brightened view is taken only where the untrimmed and brightened views' details are less alike than this
#: (the ladder's ends far apart): the two pictures of the tuning fold whose +20 % copies it finds are at 0.67, and
#: 1 % of clip art and 5 % of a spread of the corpus is below 0.90, so it costs the hash stage about nothing
#: (``python -m tooling.eval.cost``), where taking it for every picture cost 0.57 ms a picture on clip art.
LADDER_BELOW = 0.90
#: Borders trimmed one inside the other, each found on a thumbnail of what the last one left: a frame, then the
#: mat or the margin inside it (a bordered copy of a picture that already had a margin).
TRIM_PASSES = 2

#: Sub-rectangles hashed besides the whole picture, as (left, top, right, bottom) fractions of the picture as
#: uploaded (borders kept), in the order of :attr:`Fingerprint.regions`.
REGIONS: tuple[tuple[float, float, float, float], ...] = (
    (0.05, 0.05, 0.95, 0.95),  # centre 90 %: a 10 % zoom, a 5 % crop all round
    (0.10, 0.10, 0.90, 0.90),  # centre 80 %: a 20 % zoom, a 10 % crop all round
    (0.15, 0.0, 1.0, 1.0),  # without the left 15 %: a crop from one side
    (0.0, 0.0, 0.85, 1.0),  # without the right 15 %
    (0.0, 0.15, 1.0, 1.0),  # without the top 15 %
    (0.0, 0.0, 1.0, 0.85),  # without the bottom 15 %
    (0.20, 0.0, 1.0, 1.0),  # without the left 20 %: with the bottom one, clear of a corner overlay
    (0.0, 0.0, 0.80, 1.0),  # without the right 20 %
    (0.0, 0.20, 1.0, 1.0),  # without the top 20 %
    (0.0, 0.0, 1.0, 0.80),  # without the bottom 20 %
)

assert len(REGIONS) == REGION_COUNT

#: Coefficients whose length is below this many grey levels describe no structure: the descriptor is all zeros.
NO_STRUCTURE = 1e-3
#: Side of the box blur a view's details are taken against: what it removes is the view's coarse shading.
DETAIL_BOX = 5
#: :func:`information` of a picture whose structure sits in a few coefficients: this share of the 90th percentile
#: (:data:`PEAK_RANK`) of their distances from the median, when that is more than the median distance. At the
#: guard's floor (0.3) it asks for a peak of 7.5 grey levels: chosen on the corpus's tuning fold, where any floor
#: from 4 to 14 leaves none of its negative pairs matching (a generated overlay frame is at 3.8, a historic flag
#: at 14.1) and the geometric middle of that range is 7.5. A centred disc, a cross or a saltire is decided; a
#: striped flag, whose few coefficients all sit in one line of the 8×8 block, still abstains with the splits.
PEAK_SHARE = 0.04
PEAK_RANK = 0.9


Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class Fingerprint:
    """The whole picture's descriptor and the rest of what the near-duplicate stages compare (:class:`Look`)."""

    dct: Vector
    look: Look

    @property
    def mirror(self) -> Vector:
        row: Vector = self.look.variants[0]
        return row

    @property
    def regions(self) -> Vector:
        rows: Vector = self.look.variants[1 : 1 + REGION_COUNT]
        return rows

    @property
    def bright(self) -> Vector:
        row: Vector = self.look.variants[BRIGHT - 1]
        return row

    @property
    def untrimmed(self) -> Vector:
        row: Vector = self.look.variants[UNTRIMMED - 1]
        return row

    @property
    def bright_half(self) -> Vector:
        row: Vector = self.look.variants[BRIGHT_HALF - 1]
        return row


def fingerprint(image: Image.Image) -> Fingerprint:
    """The fingerprint of an RGB picture (any size; the decoder's reduced-size JPEGs are fine)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    work = as_uploaded_work = Work.of(rgb)
    grey = uploaded = np.asarray(work.grey, dtype=np.float64)
    brightened = np.asarray(work.brightened(BRIGHTER), dtype=np.float64)  # as uploaded: see ``bright`` above
    for _ in range(TRIM_PASSES):  # a frame, then the mat or margin inside it
        found = trim(grey)
        if found.box == (0, 0, *work.size):
            break
        # Cut the borders off the picture itself where the edges found fall (to a fraction of a thumbnail
        # pixel, or where the picture itself steps from the border), and make the thumbnail again: the first
        # one blurred each border a pixel into the picture.
        line = math.ceil(rgb.size[0] / work.size[0])  # the picture's pixels a thumbnail line
        rgb = rgb.crop(refined(rgb, scaled(found.edges, rgb.size, work.size), line, found))
        work = Work.of(rgb)
        grey = np.asarray(work.grey, dtype=np.float64)
    h, w = grey.shape

    trimmed = grey is not uploaded
    height, width = uploaded.shape
    framed = [(0.0, 0.0, float(width), float(height)), *(_box(r, width, height) for r in REGIONS)]
    # The regions are the uploaded picture's, beside its untrimmed whole (the whole picture itself when nothing
    # was trimmed) and the brightened view.
    as_uploaded = thumbs32(uploaded, framed, also=brightened)
    views = thumbs32(grey, [(0.0, 0.0, float(w), float(h))]) if trimmed else as_uploaded
    whole, regions, bright = views[0], as_uploaded[1 : 1 + len(REGIONS)], as_uploaded[-1:]
    untrimmed = as_uploaded[:1]
    # The views in variant order: whole, mirror, regions, brightened, untrimmed, untrimmed mirror.
    stack = np.concatenate([views[:1], whole[None, :, ::-1], regions, bright, untrimmed, untrimmed[:, :, ::-1]])
    low = _low_dct(stack)
    described = descriptors(low)
    fine = details(stack)
    if not trimmed:  # nothing trimmed: the untrimmed views are the whole one and its mirror
        described[UNTRIMMED], fine[UNTRIMMED] = described[0], fine[0]
        described[UNTRIMMED_MIRROR], fine[UNTRIMMED_MIRROR] = described[1], fine[1]
    apart = float(detail_similarities(fine[BRIGHT : BRIGHT + 1], fine[UNTRIMMED : UNTRIMMED + 1])[0, 0])
    if similarity(described[BRIGHT], described[UNTRIMMED]) >= BRIGHT_SAME and apart >= BRIGHT_SAME_DETAILS:
        # the brightened view is the untrimmed one: no row of its own, in the index or out of it
        described[BRIGHT], fine[BRIGHT] = described[UNTRIMMED], fine[UNTRIMMED]
    half_view = described[UNTRIMMED : UNTRIMMED + 1], fine[UNTRIMMED : UNTRIMMED + 1]  # no half rung: a repeat
    if apart < LADDER_BELOW:  # the ladder's two ends lie far apart: its middle rung
        half = thumbs32(np.asarray(as_uploaded_work.brightened(BRIGHTER_HALF), dtype=np.float64), framed[:1])
        half_view = descriptors(_low_dct(half)), details(half)
    described, fine = np.concatenate([described, half_view[0]]), np.concatenate([fine, half_view[1]])
    split = _split_share(whole)
    gain = exposure(whole)
    texture = _texture(grey.astype(np.uint8), FLAT_RANGE / gain)  # whole grey levels: 4× less memory, same result
    grid = work.cells(SHADE_GRID)  # the layout's cells are its blocks: one resize instead of two
    colour = colour_layout(grid.reduce(SHADE_GRID // COLOUR_GRID)) + shade(grid)
    return Fingerprint(described[0], Look(described[1:], information(low[0]) * gain, split, texture, colour, fine))


def exposure(whole: Floats) -> float:
    """The gain that takes the whole view's brightest level to white, at most :data:`BRIGHTER` (1 when it is
    white already). The guard measures ``information`` and ``texture`` at that exposure: a copy darkened by 20 %
    then carries what its source did, where at its own exposure both fell by a fifth and the guard abstained on
    copies whose source it decided (a wallpaper of faint lines: texture 0.055 → 0.002, a dim game screenshot:
    information 0.36 → 0.29). A darker picture is measured at most that much brighter: a near-black one has little
    to tell apart, whatever its exposure.

        >>> exposure(np.full((32, 32), 255.0)), exposure(np.full((32, 32), 227.0)), exposure(np.full((32, 32), 60.0))
        (1.0, 1.1233480176211454, 1.25)
    """
    return min(BRIGHTER, 255.0 / max(float(whole.max()), 1.0))


def information(coefficients: Floats) -> float:
    """How much structure a view's 8×8 low DCT coefficients (grey levels) carry: the median distance of the 64 from
    their median, or :data:`PEAK_SHARE` of the :data:`PEAK_RANK` percentile of the 63 AC ones' distances from
    theirs, whichever is larger. A solid colour or a smooth gradient has both near 0; a red disc on white has its
    energy in the 16 even coefficients, so its median distance is 0 while its peak is large.

        >>> disc = _low_dct(thumbs32(np.where(np.hypot(*np.mgrid[-16:16, -16:16] + 0.5) < 10, 60.0, 255.0),
        ...     [(0.0, 0.0, 32.0, 32.0)]))[0]
        >>> round(median(np.abs(disc - median(disc))), 2), round(information(disc), 2)
        (0.0, 0.71)
    """
    spread = median(np.abs(coefficients - median(coefficients)))
    ac = coefficients.ravel()[1:]
    distances = np.sort(np.abs(ac - median(ac)))
    peak = float(distances[int(PEAK_RANK * (len(distances) - 1))])
    return max(spread, PEAK_SHARE * peak)


def _box(region: tuple[float, float, float, float], w: int, h: int) -> tuple[float, float, float, float]:
    left, top, right, bottom = region
    return (left * w, top * h, right * w, bottom * h)


@cache
def _dct_matrix(n: int) -> Floats:
    """Orthonormal DCT-II: coefficients in grey levels (a positive multiple of scipy's unnormalised one)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    matrix: Floats = m
    return matrix


def _low_dct(pixels: Floats) -> Floats:
    """The HASH_SIDE² lowest DCT coefficients of each DCT_SIDE² view (views × 8 × 8), per-pixel amplitude."""
    d = _dct_matrix(DCT_SIDE)[:HASH_SIDE]
    low: Floats = d @ pixels @ d.T / DCT_SIDE * 2
    return low


def descriptors(low: Floats) -> Vector:
    """Each view's unit descriptor (views × :data:`DESCRIPTOR_DIM`): its 64 low DCT coefficients, row-major,
    median-centred over the 63 that are not DC, the DC slot 0, scaled to unit length (all zeros for a view with no
    structure at all, which matches nothing)."""
    flat = low.reshape(len(low), -1).astype(np.float64)
    ac = flat[:, 1:]
    ordered = np.sort(ac, axis=1)
    half = ac.shape[1] // 2  # 63 values: the middle one
    centred = np.zeros_like(flat)
    centred[:, 1:] = ac - ordered[:, half : half + 1]
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    # A view with no structure has coefficients of float rounding (~1e-7 grey levels): all zeros, not their noise.
    out: Vector = (centred / np.where(norms > NO_STRUCTURE, norms, np.inf)).astype(np.float32)
    assert out.shape[1] == DESCRIPTOR_DIM
    return out


def details(views: Floats) -> npt.NDArray[np.int8]:
    """Each view's fine structure (views × side², signed bytes): the view minus its :data:`DETAIL_BOX` box blur
    (edges repeated), centred and scaled so that its largest value is ±127, or :data:`~worker.views.QUIET_GAIN` units a
    grey level when that is less (a quiet view). Compared by cosine (:func:`worker.decision.detail_similarities`),
    which makes the scale and the brightness irrelevant; a quiet view's scale tells its amplitude.

        >>> checks = np.indices((32, 32)).sum(axis=0) % 2.0  # a checkerboard of 0 and 1
        >>> loud, faint = details(np.stack([checks * 100, checks]))  # 100 grey levels apart, and 1
        >>> int(np.abs(loud).max()), int(np.abs(faint).max())
        (127, 9)
    """
    n, h, w = views.shape
    blurred = _box_matrix(h) @ views @ _box_matrix(w).T
    fine = (views - blurred).reshape(n, h * w)
    fine -= fine.mean(axis=1, keepdims=True)
    peak = np.abs(fine).max(axis=1, keepdims=True)
    gain = np.minimum(QUIET_GAIN, 127 / np.where(peak > 1e-9, peak, 1.0))
    out: npt.NDArray[np.int8] = np.round(fine * gain).astype(np.int8)
    return out


@cache
def _box_matrix(n: int) -> Floats:
    """The :data:`DETAIL_BOX` box blur of ``n`` samples as a matrix, edges repeated (``B @ x`` blurs ``x``)."""
    half = DETAIL_BOX // 2
    matrix = np.zeros((n, n))
    for i in range(n):
        for j in range(i - half, i + half + 1):
            matrix[i, min(max(j, 0), n - 1)] += 1.0 / DETAIL_BOX
    out: Floats = matrix
    return out


def _texture(grey: npt.NDArray[np.uint8], flat: float) -> float:
    """Share of the interior pixels whose 3×3 neighbourhood spans more than ``flat`` grey levels (:data:`FLAT_RANGE`
    at the picture's best exposure)."""
    if min(grey.shape) < 3:
        return 0.0
    high = np.maximum(np.maximum(grey[:-2], grey[1:-1]), grey[2:])  # separable: rows, then columns
    low = np.minimum(np.minimum(grey[:-2], grey[1:-1]), grey[2:])
    high = np.maximum(np.maximum(high[:, :-2], high[:, 1:-1]), high[:, 2:])
    low = np.minimum(np.minimum(low[:, :-2], low[:, 1:-1]), low[:, 2:])
    return float(np.mean((high - low) > flat))


def _split_share(pixels: Floats) -> float:
    """Otsu's effectiveness: the share of the thumbnail's variance that one light/dark split explains."""
    values = np.sort(pixels.ravel())
    total = float(values.var())
    if total <= 1e-9:
        return 1.0
    n = values.size
    prefix = np.cumsum(values)
    k = np.arange(1, n)
    mean_low = prefix[:-1] / k
    mean_high = (prefix[-1] - prefix[:-1]) / (n - k)
    between = (k / n) * (1 - k / n) * (mean_low - mean_high) ** 2
    return float(between.max() / total)
