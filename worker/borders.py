"""Where a picture's uniform borders end: letterbox and pillarbox bars, a passe-partout, a frame, a page margin.

:func:`trim` finds them on a grey thumbnail, in whole lines and to a fraction of a line; :func:`worker.fingerprint`
cuts them off the picture itself there and makes its thumbnail again, so that a bordered copy is described like
its source, details included.

    >>> found = trim(grey)  # 100 × 120 lines, behind a border 10.4 lines wide that a thumbnail blurred
    >>> found.box, [round(e, 1) for e in found.edges]
    ((11, 11, 109, 89), [10.4, 10.4, 109.6, 89.6])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

Floats = npt.NDArray[np.float64]

#: A row or column is part of a uniform border when its grey levels stay within this of the border's colour...
BORDER_TOLERANCE = 10.0
#: ...or within this share of the picture's own spread of grey levels (2nd to 98th percentile), when that is
#: less: the dark background of a low-contrast picture varies by a few grey levels and is the picture, not a
#: border to trim (down to :data:`BORDER_TOLERANCE_MIN`, JPEG's noise in a bar).
BORDER_SHARE = 0.1
BORDER_TOLERANCE_MIN = 3.0
#: Lines dropped after a border: the blend of border and picture.
BLEND = 1
#: Lines after a border whose share of border is measured (:meth:`_Run.edge`): the thumbnail's blur spans two.
EDGE_LINES = 2
#: ... against the pixels of the next line that differ from the border: at least this many, and this share.
EDGE_PIXELS = 4
EDGE_SHARE = 0.1
#: Share of a line's pixels that tell it from the border, for :func:`refined` to take it as where the picture
#: starts: 0.2–0.8 find as many bordered copies on the tuning fold; the middle of that range.
STEP_SHARE = 0.5
#: JPEG rings in the border a few lines before a sharp edge (a screenshot's dark first row against white): lines
#: off the border's colour by at most this many tolerances, up to this many lines before the step, do not hide
#: it. Chosen on the tuning fold among 2 or 4 lines and 3 or 4 tolerances: 4 and 3 find the most bordered
#: copies (10 % white border 0.947 → 0.950, 5 % black border 0.959 → 0.961, 12.5 % letterbox 0.963 → 0.964; no
#: other edit moves). Half a JPEG block; a faint tip of the picture is further off or runs on further.
RINGING_LINES = 4
RINGING_LEVELS = 3
#: Pixels off a border's colour for :func:`refined` to take a line the thumbnail counted as border for the
#: picture's faint edge; one alone is JPEG's noise. On the tuning fold 2 finds the most bordered copies (10 %
#: white border 0.947, against 0.942 for 1 and 0.945 for 3).
FAINT_PIXELS = 2
#: Most of a side that trimming may remove (more is the picture, not a border).
BORDER_MAX = 0.35


@dataclass(frozen=True, slots=True)
class Trim:
    """Where a picture's uniform borders end: ``box``, in whole lines (``(left, top, right, bottom)``, the
    blended line after a border left out), and ``edges``, where the picture starts to a fraction of a line
    (:meth:`_Run.edge`). :func:`worker.fingerprint.fingerprint` cuts the picture itself at ``edges`` and makes its
    thumbnail again,
    so that a bordered copy's views cover what its source's do to a tenth of a thumbnail pixel, unblurred by the
    border: its details need that (a third of a pixel off, or a border's colour blurred into the first line, and
    a screenshot's details agree at 0.66–0.95 instead of 0.99)."""

    box: tuple[int, int, int, int]
    edges: tuple[float, float, float, float]
    tolerance: float = BORDER_TOLERANCE  # the grey levels a border line stays within
    colours: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # each side's border: left, top, right, bottom


def trim(grey: Floats) -> Trim:
    """``grey`` without its uniform borders. Borders come in opposite pairs of one colour (letterbox bars,
    pillarbox bars, a frame), each at most :data:`BORDER_MAX` of the side, and as wide at both ends as the narrower
    run (:func:`_widths`): a uniform strip on one side only (a clipped sky, a title bar) is part of the picture. A
    picture that is all border (a solid colour) is kept
    whole."""
    h, w = grey.shape
    tolerance = min(BORDER_TOLERANCE, max(BORDER_TOLERANCE_MIN, BORDER_SHARE * _spread(grey)))
    (left, right), (top, bottom) = _paired(grey.T, tolerance), _paired(grey, tolerance)
    cut_x, x = _widths(left, right, grey.T, tolerance)
    cut_y, y = _widths(top, bottom, grey, tolerance)
    inner = grey[cut_y : h - cut_y, cut_x : w - cut_x]
    if inner.shape[0] < 8 or inner.shape[1] < 8 or float(np.ptp(inner)) <= 2 * tolerance:
        return Trim((0, 0, w, h), (0.0, 0.0, float(w), float(h)))  # nothing but border: a uniform picture
    colours = (left.colour, top.colour, right.colour, bottom.colour)
    return Trim((cut_x, cut_y, w - cut_x, h - cut_y), (x, y, w - x, h - y), tolerance, colours)


def _widths(first: _Run, last: _Run, lines: Floats, tolerance: float) -> tuple[int, float]:
    """``(cut, edge)`` of the border at both ends of ``lines``: the narrower run's, at each end. A uniform edge
    of the picture that runs on from a border on one side only is part of the picture, as it is without the
    border (a dark sky above a black frame); borders as wide at both ends (a passe-partout, letterbox bars) are
    what copies add."""
    if not first:
        return (0, 0.0)
    if last.end < first.end:
        return (last.cut, last.edge(lines[::-1], tolerance))
    return (first.cut, first.edge(lines, tolerance))


@dataclass(frozen=True, slots=True)
class _Run:
    """A border at one end of a picture's lines: its flat lines end ``end`` lines in, in ``colour``."""

    end: int = 0
    colour: float = 0.0

    def __bool__(self) -> bool:
        return self.end > 0

    @property
    def cut(self) -> int:
        """Lines to trim at each end: the flat ones and the line after them, a blend of border and picture
        (thumbnail resampling, JPEG ringing) that would shift the hash."""
        return self.end + BLEND if self.end else 0

    def edge(self, inwards: Floats, tolerance: float) -> float:
        """Where the picture starts, to a fraction of a line (``inwards``: the lines from this run's end in): the
        flat lines, plus, for each of the :data:`EDGE_LINES` lines after them, the share of it that is still
        border. That share is measured against the next line, pixel by pixel where that line differs from the
        border (the median over them); for a blurred step edge the shares add up to where the step is.
        :attr:`cut` when no line there differs enough from the border to tell (0 without a run)."""
        if not self:
            return 0.0
        reference = self.end + EDGE_LINES
        if reference >= len(inwards):
            return float(self.cut)
        inside = inwards[reference] - self.colour
        telling = np.abs(inside) > 2 * tolerance
        if np.count_nonzero(telling) < max(EDGE_PIXELS, EDGE_SHARE * len(inside)):
            return float(self.cut)
        shares = (inwards[self.end : reference][:, telling] - self.colour) / inside[telling]
        return self.end + float(np.sum(1.0 - np.median(np.clip(shares, 0.0, 1.0), axis=1)))


def scaled(
    edges: tuple[float, float, float, float], size: tuple[int, int], thumbnail: tuple[int, int]
) -> tuple[int, int, int, int]:
    """``edges`` found on a thumbnail of ``thumbnail`` size, in whole pixels of the picture of ``size``."""
    sx, sy = size[0] / thumbnail[0], size[1] / thumbnail[1]
    left, top, right, bottom = edges
    return (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))


def refined(picture: Image.Image, box: tuple[int, int, int, int], line: int, found: Trim) -> tuple[int, int, int, int]:
    """``box`` (``found``'s :attr:`Trim.edges` :func:`scaled` to ``picture``, whose thumbnail's lines are ``line``
    pixels apart) with each trimmed side moved to where the border ends in ``picture`` itself: the first line within two
    thumbnail lines and one pixel of it (``reach``) that most of its pixels tell from the border's colour
    (:attr:`Trim.colours`, :func:`_step`). A side without such a step (an object's antialiased tip on a plain
    background, a border blurred by a decoder's downscaling) keeps its place. The thumbnail's edge is blurred by the
    picture's own edge lines: a screenshot's first column, lighter than the next and so counted partly as border, cut a
    pixel of the picture off a white-bordered copy, and its details agreed at 0.97, not 0.99 (on the tuning fold this
    takes the 10 % white border's copies found from 0.886 to 0.905, the 5 % black border's from 0.936 to 0.950, both
    letterboxes' from 0.94 to 0.95).

    A side the thumbnail trimmed too far moves out: an object whose faint tip or shadow touches the picture's
    edge (a few pixels a line, a dozen grey levels off white) is not trimmed, but a white-bordered copy's
    thumbnail blurs the tip into the border. Where no step is found, the border ends at the first line within
    ``reach`` outside the thumbnail's edge with :data:`FAINT_PIXELS` pixels off its colour (:func:`_flat_end`),
    and the opposite side's border is cut no wider (borders come in pairs, :func:`trim`). On the tuning fold the
    10 % white border's copies found go from 0.908 to 0.947, the 10 % letterbox's from 0.958 to 0.967 (looking
    twice as far out finds the same white-bordered copies and loses two letterboxed and black-bordered ones).

    Two opposite sides whose steps lie more than a thumbnail line apart are both cut at the nearer one: the
    thumbnail found the border as wide at both ends (:func:`trim`), and the further step is the picture's own
    strip of the border's colour (a toolbar's light last rows beside a white border), which its source keeps.

        >>> grey = Image.new("L", (40, 30), 255)
        >>> grey.paste(200, (5, 5, 35, 25)); grey.paste(140, (5, 5, 6, 25))  # a darker first column
        >>> white = Trim((3, 3, 18, 13), (3.0, 3.0, 18.0, 13.0), 10.0, (255.0,) * 4)  # found on a half-size thumbnail
        >>> refined(grey.convert("RGB"), (6, 5, 35, 25), 1, white)
        (5, 5, 35, 25)
    """
    w, h = picture.size
    reach = 2 * line + 1
    insets = [box[0], box[1], w - box[2], h - box[3]]
    out = list(insets)
    faint: set[int] = set()
    for side, (inset, size) in enumerate(zip(insets, (w, h, w, h), strict=True)):
        if inset <= 0:
            continue
        low = max(0, inset - reach)
        distance = np.abs(_lines(picture, side, low, min(size, inset + reach)) - found.colours[side])
        step = _step(distance, found.tolerance)
        if step is not None:
            out[side] = low + step
            continue
        end = _flat_end(distance[: inset - low], found.tolerance)
        if end is not None:  # the thumbnail blurred faint pixels of the picture into its border
            out[side] = low + end
            faint.add(side)
    for side in faint:  # borders come in pairs as wide as the narrower one (trim): the other side's is no wider
        out[(side + 2) % 4] = min(out[(side + 2) % 4], out[side])
    for side in (0, 1):  # ... and a step further in than a line past the other side's is the picture's own
        if insets[side] > 0 and insets[side + 2] > 0 and abs(out[side] - out[side + 2]) > line:
            out[side] = out[side + 2] = min(out[side], out[side + 2])
    return (out[0], out[1], w - out[2], h - out[3])


def _lines(picture: Image.Image, side: int, start: int, stop: int) -> Floats:
    """Lines ``start`` to ``stop`` in from ``side`` (0 left, 1 top, 2 right, 3 bottom), grey, from the edge in."""
    w, h = picture.size
    box = ((start, 0, stop, h), (0, start, w, stop), (w - stop, 0, w - start, h), (0, h - stop, w, h - start))[side]
    grey = np.asarray(picture.crop(box).convert("L"), dtype=np.float64)
    lines = grey.T if side % 2 == 0 else grey
    return lines[::-1] if side >= 2 else lines


def _step(distance: Floats, tolerance: float) -> int | None:
    """The first of the lines with a pixel more than twice ``tolerance`` from the border's colour (``distance``:
    each pixel's, line by line), if the first line has none and at least :data:`STEP_SHARE` of that line's pixels
    are that far (a straight edge); or such a line up to :data:`RINGING_LINES` after the first line off, when
    every pixel before it stays within :data:`RINGING_LEVELS` tolerances (JPEG's ringing in the border before a
    sharp edge, not a faint tip of the picture).

        >>> edge = np.zeros((6, 10)); edge[4:] = 100  # a straight edge at line 4
        >>> ringed = edge.copy(); ringed[2, 3] = ringed[3, 6] = 8  # and a little ringing before it
        >>> _step(edge, 3.0), _step(ringed, 3.0), _step(ringed, 2.0)  # ringing must stay within 3 tolerances
        (4, 4, None)
    """
    far = (distance > 2 * tolerance).mean(axis=1)
    if far[0] > 0 or not far.any():
        return None
    first = int(np.argmax(far > 0))
    if far[first] >= STEP_SHARE:
        return first
    strong = far[first : first + RINGING_LINES + 1] >= STEP_SHARE
    if not strong.any():
        return None
    step = first + int(np.argmax(strong))
    return step if distance[first:step].max() <= RINGING_LEVELS * tolerance else None


def _flat_end(distance: Floats, tolerance: float) -> int | None:
    """Where a border ends among the lines of ``distance`` (each pixel's from the border's colour, from the
    picture's edge in, up to where the thumbnail put the border's edge) when the thumbnail put that edge too far
    in: the first line with :data:`FAINT_PIXELS` pixels more than ``tolerance`` off, after a first line without.
    None when no line is off, or the first one is."""
    off = (distance > tolerance).sum(axis=1) >= FAINT_PIXELS
    if not len(off) or off[0] or not off.any():
        return None
    return int(np.argmax(off))


def _spread(grey: Floats) -> float:
    """The 2nd to 98th percentile range of grey levels, from every other pixel of every other row."""
    sample = grey[::2, ::2].ravel()
    low, high = (len(sample) - 1) * 2 // 100, (len(sample) - 1) * 98 // 100
    ordered = np.partition(sample, [low, high])
    return float(ordered[high] - ordered[low])


def _paired(lines: Floats, tolerance: float) -> tuple[_Run, _Run]:
    """The border runs at both ends of ``lines`` (the last measured from the end), or none when either end has
    none or their colours differ."""
    first, last = _flat_run(lines, tolerance), _flat_run(lines[::-1], tolerance)
    if not first or not last or abs(first.colour - last.colour) > tolerance:
        return (_Run(), _Run())
    return (first, last)


def _flat_run(lines: Floats, tolerance: float) -> _Run:
    """The leading lines (rows of ``lines``) that are uniform and of the first one's colour, if at least two."""
    limit = int(len(lines) * BORDER_MAX)
    colour = median(lines[0])
    off = np.abs(lines[:limit] - colour).max(axis=1) > tolerance  # every line at once: a loop cost 0.4 ms a picture
    n = int(np.argmax(off)) if off.any() else limit
    return _Run(n, colour) if n >= 2 else _Run()  # a single edge line is JPEG ringing or a frame, not a border


def median(values: Floats) -> float:
    """np.median without its overhead (these arrays are small)."""
    ordered = np.sort(values, axis=None)
    n = ordered.size
    return float(ordered[n // 2]) if n % 2 else float(ordered[n // 2 - 1] + ordered[n // 2]) / 2
