"""The small pictures a fingerprint is made from: the working thumbnail (:class:`Work`) and the 32×32 views cut
from it (:func:`thumbs32`). Part of :mod:`worker.fingerprint`.

    >>> from PIL import Image
    >>> work = Work.of(Image.new("RGB", (1024, 768), (200, 120, 40)))
    >>> work.size, work.reduced.size, work.grey.getpixel((0, 0)), work.brightened(1.25).getpixel((0, 0))
    ((128, 96), (256, 192), 135, 168)
    >>> Work.of(Image.new("RGB", (100, 50))).size  # a smaller picture is enlarged to the working size
    (128, 64)
    >>> Work.of(Image.new("RGB", (1600, 400))).size, Work.of(Image.new("RGB", (4000, 100))).size  # 4:1, 40:1
    ((256, 64), (1024, 26))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image

Floats = npt.NDArray[np.float64]

DCT_SIDE = 32  # of a 32×32 grey thumbnail (imagehash's pHash: hash_size 8, highfreq_factor 4)
WORK_SIDE = 128  # the working thumbnail's longer side, for a picture up to 2:1...
#: ... and its shorter side at the least, for one wider or taller than that (:meth:`Work.of`)...
WORK_SHORT = 64
#: ... with its longer side at the most this (a 16:1 banner's; a longer one gets fewer lines).
WORK_LONG = 1024
#: Pillow's resize first reduces by whole factors while the picture stays at least this many times the size asked.
REDUCING_GAP = 2.0


@dataclass(frozen=True, slots=True)
class Work:
    """The working thumbnail in grey (:data:`WORK_SIDE` on the longer side, :data:`WORK_SHORT` on the shorter of a
    picture wider or taller than 2:1: :meth:`of`) and the picture reduced by whole factors
    on the way to it (``reduced``, in colour, at least twice the thumbnail's size), as Pillow's resize with a
    reducing gap of 2 makes them: :meth:`brightened` brightens that and makes the same thumbnail of it.
    Brightening the thumbnail instead averaged the picture before clipping it, where a brightened copy is clipped
    before it is averaged: a game's screenshot brightened by 20 % met its source's brightened view at 0.96 instead
    of 0.998. The thumbnail is resampled in grey, not in colour and then made grey: resampling commutes with the
    grey mix (up to rounding), and one channel costs half of what four bytes a pixel did (0.37 ms instead of 0.72
    on clip art).

    A smaller picture is enlarged to the working size (``reduced`` is then the picture itself), so that every
    picture comes to its 32×32 views through the same working size. Left at its own size, a 100-pixel copy of a
    200-pixel illustration was resampled to 32 along another chain than its source, and its details, a little
    sharper, met its source's at 0.96–0.98 where 0.98 is asked (three illustrations' ½ downscales on the test fold,
    a game's screenshot on the tuning fold; generated cartoons 0.984–0.993, enlarged 0.998–0.999). Nothing else
    on the tuning fold moved, nor did its negative pairs' tail."""

    grey: Image.Image
    reduced: Image.Image
    box: tuple[float, float, float, float]  # the picture in ``reduced``'s pixels

    @property
    def size(self) -> tuple[int, int]:
        return self.grey.size

    @classmethod
    def of(cls, rgb: Image.Image) -> Work:
        """The working thumbnail of ``rgb``: :data:`WORK_SIDE` on its longer side, or, for a picture wider or
        taller than 2:1, :data:`WORK_SHORT` lines on its shorter side (and at most :data:`WORK_LONG` on its longer).

        Its resolution is set by the shorter side wherever the longer one would leave it under
        :data:`WORK_SHORT`: on a 4:1 picture's thumbnail 128 pixels long, 32 lines high, a border of 5 % of the
        height is 1.6 lines, which the resampling blurs into the picture's own first lines, and a region of the
        centre 90 % is 29 lines enlarged to the view's 32, where a zoomed copy's view is its own 32 lines
        reduced: their details disagree. At 3:1 and more, bordered, zoomed and cropped copies were missed 1 in 5
        times, against 1 in 30 under 2:1."""
        w, h = rgb.size
        scale = max(WORK_SIDE / max(w, h), min(WORK_SHORT / min(w, h), WORK_LONG / max(w, h)))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # A smaller picture is not reduced (factors of 1) and the resize enlarges it: ``reduced`` is the picture.
        fx, fy = int(w / size[0] / REDUCING_GAP) or 1, int(h / size[1] / REDUCING_GAP) or 1
        reduced = rgb.reduce((fx, fy)) if fx > 1 or fy > 1 else rgb
        box = (0.0, 0.0, w / fx, h / fy)
        return cls(reduced.convert("L").resize(size, Image.Resampling.BILINEAR, box=box), reduced, box)

    def cells(self, side: int) -> Image.Image:
        """The picture in colour, box-averaged to ``side``² cells."""
        return self.reduced.resize((side, side), Image.Resampling.BOX, box=self.box)

    def brightened(self, factor: float) -> Image.Image:
        """The grey thumbnail of the picture with every channel multiplied by ``factor`` and clipped (grey before
        resizing: one channel to resample instead of three, a third of the cost)."""
        # Pillow's point() rounds a table's 768 entries in Python on every call (0.05 ms, a fortieth of the whole
        # fingerprint); these are integers already, so the core's point() takes them as they are.
        bright = self.reduced._new(self.reduced.im.point(_scaled_levels(factor), None)).convert("L")
        if self.reduced.size == self.size:
            return bright
        return bright.resize(self.size, Image.Resampling.BILINEAR, box=self.box)


@cache
def _scaled_levels(factor: float) -> list[int]:
    """A lookup table for :meth:`PIL.Image.Image.point` of an RGB picture: each level times ``factor``, clipped."""
    return [min(255, round(level * factor)) for level in range(256)] * 3


def thumbs32(grey: Floats, boxes: list[tuple[float, float, float, float]], also: Floats | None = None) -> Floats:
    """Each box of ``grey`` resampled to DCT_SIDE² with an antialiasing triangle filter (as Pillow's BILINEAR
    resize), all at once as batched matrix products: much cheaper than one Pillow resize per region. ``grey`` is
    first averaged 2×2 when that keeps it at least twice DCT_SIDE, which quarters the products' cost. ``also``, a
    second picture of ``grey``'s size, is resampled over the first box with the same weights and comes last."""
    spans = np.array(boxes, dtype=np.float64)
    h, w = grey.shape
    pictures = [grey] if also is None else [grey, also]
    if min(h, w) >= 3 * DCT_SIDE:
        pictures = [_halved(p) for p in pictures]
        spans = spans / 2
    first, *rest = (p.astype(np.float32) for p in pictures)
    row_spans, row_of = _distinct(spans[:, [1, 3]])
    column_spans, column_of = _distinct(spans[:, [0, 2]])
    rows = _weights(row_spans, first.shape[0])  # spans × out × height
    columns = _weights(column_spans, first.shape[1])  # spans × out × width
    across = first @ columns.transpose(0, 2, 1)  # column spans × height × out: shared by views of one span
    small = rows[row_of] @ across[column_of]
    if rest:
        extra = rows[row_of[0]] @ rest[0] @ columns[column_of[0]].T
        small = np.concatenate([small, extra[None]])
    out: Floats = small.astype(np.float64)
    return out


def _halved(picture: Floats) -> Floats:
    """``picture`` averaged over 2×2 blocks (a last odd row or column dropped)."""
    h, w = picture.shape[0] // 2 * 2, picture.shape[1] // 2 * 2
    even, odd = picture[0:h:2], picture[1:h:2]
    halved: Floats = (even[:, 0:w:2] + even[:, 1:w:2] + odd[:, 0:w:2] + odd[:, 1:w:2]) * 0.25
    return halved


def _distinct(spans: Floats) -> tuple[Floats, npt.NDArray[np.intp]]:
    """The distinct rows of ``spans`` (a few pairs) and, for each row, the index of its distinct row: as
    ``np.unique(axis=0, return_inverse=True)``, in first-seen order, without its sorting's overhead."""
    index: dict[tuple[float, float], int] = {}
    of = np.array([index.setdefault((a, b), len(index)) for a, b in spans.tolist()], dtype=np.intp)
    return np.array(list(index), dtype=np.float64).reshape(-1, 2), of


def _weights(spans: Floats, size: int) -> npt.NDArray[np.float32]:
    """``spans × DCT_SIDE × size`` resampling weights of the spans ``[start, stop)`` (rows of ``spans``) of ``size``
    samples."""
    return np.stack([_span_weights(start, stop, size) for start, stop in spans.tolist()])


@lru_cache(maxsize=2048)  # spans are fractions of the thumbnail's side (≤ 128): few, and met again and again
def _span_weights(start: float, stop: float, size: int) -> npt.NDArray[np.float32]:
    """``DCT_SIDE × size`` weights of the triangle filter resampling ``[start, stop)`` of ``size`` samples to
    DCT_SIDE, each row summing to 1 (read-only: shared by every caller).

        >>> _span_weights(0.0, 64.0, 64).sum(axis=1).round(6).tolist() == [1.0] * DCT_SIDE
        True
    """
    scale = (stop - start) / DCT_SIDE
    centres = start + (np.arange(DCT_SIDE)[:, None] + 0.5) * scale
    weights = np.maximum(1.0 - np.abs(np.arange(size)[None, :] + 0.5 - centres) / max(scale, 1.0), 0.0)
    total = weights.sum(axis=1, keepdims=True)
    out = (weights / np.where(total > 0, total, 1.0)).astype(np.float32)
    out.flags.writeable = False
    return out
