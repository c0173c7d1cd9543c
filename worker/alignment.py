"""Two views' details compared up to a fraction of a pixel: :func:`aligned_similarity`.

A picture with a plain background (clip art, an icon, a product shot) is trimmed to its object, and where the
object ends is measured to a fraction of a thumbnail pixel: a copy in a wider frame (a white passe-partout) is
thumbnailed at a smaller scale and measures it a little differently. Their whole views then differ by a small
stretch and shift, which the descriptors do not feel and the details (:func:`worker.fingerprint.details`), the
finest structure, do: a 10 % white border's copy of an icon agrees at 0.91–0.97 where 0.98 is asked.

:func:`aligned_similarity` warps one view's details by a small scale and shift per axis (:data:`SCALES`,
:data:`SHIFTS`, at most 5 % and one pixel of 32) and keeps the best cosine, found one axis at a time, over the view
less its outermost :data:`EDGE` pixels (where a warp can only repeat the edge, and a trimmed copy's border left
its JPEG ringing). It is asked
only of the whole views (trimmed) of a pair whose descriptors match and whose details come within
:data:`ALIGN_FROM` of agreeing (:func:`worker.views.perceptual_similarity`, the index's confirmation), so it costs
nothing for most pairs and about three milliseconds (one thread) for the others.

    >>> import numpy as np
    >>> fine = np.random.default_rng(1).integers(-127, 128, 1024).astype(np.int8)
    >>> round(aligned_similarity(fine, fine), 4)
    1.0
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from worker.decision import Details

SIDE = 32  # the details' view side (worker.thumbnails.DCT_SIDE)
#: Per-axis scales and shifts (in pixels of the 32-pixel view) one view is warped by: a copy's trim measured a
#: little off. Chosen on the corpus's tuning fold: the 10 % white border's copies recovered with ±5 % and ±1 px
#: are 71 of the 73 that ±10 % and ±2 px recover (measured with linear interpolation), at a quarter of the cost.
SCALES = np.round(np.arange(0.95, 1.0501, 0.01), 2)
SHIFTS = np.arange(-1.0, 1.0001, 0.25)
#: Every (scale, shift) of one axis, in the order of :func:`_warps`.
WARPS = [(float(s), float(t)) for s in SCALES for t in SHIFTS]
#: Details less alike than this are not warped (most pairs, at no cost): of the tuning fold's 22 white-bordered
#: copies that a warp recovers, one starts below it (at 0.82), the next at 0.876.
ALIGN_FROM = 0.85
#: Rounds of warping one axis, then the other, with the other's best warp fixed.
ROUNDS = 3
#: Then each axis's best warp is refined by half a grid step of scale and of shift around it, this many rounds:
#: a tenth of a pixel off still costs a page of text or a map's outline a point of its details' cosine.
FINE = (0.005, 0.125)
FINE_ROUNDS = 2
#: Pixels of each edge of the view a warped comparison leaves out: a warp samples past the edge there (5 % of half
#: the side, and a pixel of shift: 1.8 pixels), where it can only repeat the edge, and a copy's trimmed edge is
#: where its border's JPEG ringing and the trim's own fraction of a pixel sit.
EDGE = 2
INSIDE = slice(EDGE, SIDE - EDGE)

Floats = npt.NDArray[np.float32]


def aligned_similarity(a: Details, b: Details) -> float:
    """The highest cosine of either view's details, warped by :data:`SCALES` and :data:`SHIFTS` along each axis,
    with the other's (two rows of :attr:`worker.decision.Look.details`), :data:`EDGE` pixels of each side left
    out; the same either way round."""
    return max(_warped(a, b), _warped(b, a))


def _warped(a: Details, b: Details) -> float:
    """The highest cosine of ``a``'s details, warped, with ``b``'s: the grid of :data:`WARPS` first, one axis at a
    time, then each axis's best warp refined by :data:`FINE` around it."""
    first = a.reshape(SIDE, SIDE).astype(np.float32)
    target = b.astype(np.float32).reshape(SIDE, SIDE)[INSIDE, INSIDE].ravel()
    target -= target.mean()
    norm = float(np.linalg.norm(target))
    if norm == 0.0:
        return 0.0
    warps = _warps()
    count = len(warps)
    stacked = warps.reshape(count * SIDE, SIDE)  # one matrix product warps along every way at once
    down, across, best = WARPS.index((1.0, 0.0)), WARPS.index((1.0, 0.0)), -1.0
    for _ in range(ROUNDS):
        rows = (stacked @ (first @ warps[across].T)).reshape(count, SIDE, SIDE)  # every warp along y, x's fixed
        down = _best(rows, target, norm)
        columns = ((warps[down] @ first) @ stacked.T).reshape(SIDE, count, SIDE).transpose(1, 0, 2)  # along x
        across = _best(columns, target, norm)
        found = _cosine(columns[across], target, norm)
        if found <= best + 1e-6:
            break
        best = found  # the first round tries the identity among the rest, and each later one only improves
    y, x = WARPS[down], WARPS[across]
    for _ in range(FINE_ROUNDS):
        ys = _nearby(y)
        rows = (_stack(ys) @ (first @ _warp(*x).T)).reshape(len(ys), SIDE, SIDE)
        y = ys[_best(rows, target, norm)]
        xs = _nearby(x)
        down_y: Floats = _warp(*y) @ first
        across_x = (down_y @ _stack(xs).T).reshape(SIDE, len(xs), SIDE).transpose(1, 0, 2)
        k = _best(across_x, target, norm)
        x = xs[k]
        best = max(best, _cosine(across_x[k], target, norm))
    return best


def _stack(warps: list[tuple[float, float]]) -> Floats:
    """The warps' matrices (:func:`_warp`) one above the other: ``len(warps)·SIDE × SIDE``."""
    out: Floats = np.concatenate([_warp(*w) for w in warps])
    return out


def _nearby(warp: tuple[float, float]) -> list[tuple[float, float]]:
    """``warp`` and its neighbours :data:`FINE` away in scale and shift (rounded, so that cached warps are met)."""
    scale, shift = warp
    ds, dt = FINE
    return [(round(scale + i * ds, 4), round(shift + j * dt, 4)) for i in (-1, 0, 1) for j in (-1, 0, 1)]


def _best(candidates: Floats, target: Floats, norm: float) -> int:
    """The candidate whose cosine with ``target`` (centred, of length ``norm``) is highest, each candidate centred:
    its dot product with a centred target needs no centring, and its centred length is ``√(Σx² − (Σx)²/n)``."""
    flat = candidates[:, INSIDE, INSIDE].reshape(len(candidates), -1)
    sums = flat.sum(axis=1)
    squares = np.einsum("ij,ij->i", flat, flat) - sums * sums / flat.shape[1]
    cosines = (flat @ target) / np.maximum(np.sqrt(np.maximum(squares, 0.0)) * norm, 1e-9)
    return int(np.argmax(cosines))


def _cosine(view: Floats, target: Floats, norm: float) -> float:
    inside = view[INSIDE, INSIDE]
    flat = inside.ravel() - inside.mean()
    return float(flat @ target / max(float(np.linalg.norm(flat)) * norm, 1e-9))


@cache
def _warps() -> Floats:
    """``warps × SIDE × SIDE`` resampling matrices of :data:`WARPS` (:func:`_warp` each)."""
    out = np.stack([_warp(scale, shift) for scale, shift in WARPS])
    out.flags.writeable = False
    return out


@lru_cache(maxsize=4096)
def _warp(scale: float, shift: float) -> Floats:
    """The ``SIDE × SIDE`` resampling matrix (``W @ x`` warps the rows of ``x``), edges repeated: output line ``i``
    samples the input at ``(i + ½ − SIDE/2)·scale + SIDE/2 + shift − ½`` with the cubic convolution kernel (Keys,
    a = −½, as Pillow's BICUBIC), which blurs a fractional shift less than linear interpolation: on the tuning
    fold it recovers more white-bordered copies (0.88 → 0.92 of them) and brings negatives no closer (the closest
    whole pair 0.979 → 0.977). Read-only: shared by every caller."""
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    lines = np.arange(SIDE)
    x = (lines + 0.5 - SIDE / 2) * scale + SIDE / 2 + shift - 0.5
    base = np.floor(x).astype(int)
    for step in (-1, 0, 1, 2):
        source = base + step
        np.add.at(out, (lines, np.clip(source, 0, SIDE - 1)), _cubic(x - source))
    out.flags.writeable = False
    return out


def _cubic(distance: npt.NDArray[np.float64], a: float = -0.5) -> Floats:
    d = np.abs(distance)
    near = (a + 2) * d**3 - (a + 3) * d**2 + 1
    far = a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    out: Floats = np.where(d <= 1, near, np.where(d < 2, far, 0.0)).astype(np.float32)
    return out
