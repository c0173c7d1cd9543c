"""The labelled set: source images from a folder, their variants, and hard negatives.

    >>> data = build(Path("data/eval-sources"), TRANSFORMS)
    >>> data.items[0].role, data.items[0].id
    (<Role.ORIGINAL: 'original'>, 'astronaut.png')

* **originals**: every decodable file of the folder, sorted by name, with its bytes as they are;
* **variants**: each transform applied to each original (labelled with the source and the transform);
* **low-information negatives** (:mod:`tooling.eval.negatives`): distinct solid colours, gradients,
  near-blank scans, transparent overlays, product shots on white, bimodal colourways, document pages and
  screenshots;
* **hard negatives**: for each original at least :data:`HARD_MIN_SIDE` px on both sides, two crops of 40 % of
  its width (height, when taller than wide) from opposite ends, 20 % apart: one picture, two different views.

Every source has an **aspect class** (:func:`aspect_class`: under 2:1, or wide or tall, 2–3:1 or 3:1 and more),
and recall is reported per class too (:func:`tooling.eval.categories.per_aspect`). A source is **blank**
(:func:`blank`) when it shows nothing once flattened onto white, as the worker sees it:
a transparent overlay whose colour lives in its alpha channel only; it is **smooth** (:func:`smooth`) when it has
no edge anywhere: a gradient, a soft glow, a blurred blob. Per-category recall is reported over the sources that
are neither (:mod:`tooling.eval.categories`); a blank source's copies are found by their bytes or not at all, a
smooth source's are what the guard is asked to abstain on, and both counts stand beside the figures.

Negative pairs are every variant against every *other* original, the originals among themselves, each hard
pair, and every low-information picture against every other one and every original. Nothing is random: the same
folder gives the same items, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from tooling.eval import negatives as low_information
from tooling.eval.corpus import dedupe, thumbnail
from tooling.eval.transforms import Transform, jpeg
from worker import imaging
from worker.errors import PermanentError

HARD_MIN_SIDE = 256
HARD_FRACTION = 0.4
MAX_PIXELS = 100_000_000  # the worker's default DEDUP_MAX_IMAGE_PIXELS
#: Blank: fewer than this share of pixels differ from the median grey level by more than BLANK_LEVELS.
BLANK_SHARE = 1e-4
BLANK_LEVELS = 2
#: Smooth: fewer than this share of a SMOOTH_SIDE-pixel thumbnail's pixels stand more than SMOOTH_LEVELS grey levels
#: off the thumbnail blurred by SMOOTH_BLUR pixels (a gradient, a glow, a blurred blob: no edge anywhere).
SMOOTH_SHARE = 0.01
SMOOTH_LEVELS = 4
SMOOTH_SIDE = 128
SMOOTH_BLUR = 2
#: A source's aspect class (:func:`aspect_class`), in report order.
ASPECTS = ("under 2:1", "wide 2–3:1", "wide 3:1+", "tall 2–3:1", "tall 3:1+")


class Role(StrEnum):
    ORIGINAL = "original"
    VARIANT = "variant"
    HARD_A = "hard-a"  # stands for an original already in the index
    HARD_B = "hard-b"  # uploaded later: must stay unique
    LOW_INFO = "low-information"  # a distinct picture of a category that global hashes confuse


@dataclass(frozen=True, slots=True)
class Item:
    """One upload. ``source`` is the index of the original it derives from; ``transform`` a transform key."""

    id: str
    role: Role
    source: int
    data: bytes
    transform: str | None = None
    category: str | None = None  # of a low-information negative


@dataclass(frozen=True, slots=True)
class Dataset:
    sources: tuple[str, ...]  # file names, in order
    items: tuple[Item, ...]
    skipped: tuple[str, ...]  # files that are not decodable images, with the reason
    categories: tuple[str, ...] = ()  # each source's category (a corpus run, :func:`build_files`), or none
    blank: tuple[bool, ...] = ()  # each source's :func:`blank` (:func:`build_files`)
    smooth: tuple[bool, ...] = ()  # each source's :func:`smooth` (:func:`build_files`)
    aspects: tuple[str, ...] = ()  # each source's :func:`aspect_class` (:func:`build_files`)

    def of_role(self, role: Role) -> list[int]:
        return [i for i, item in enumerate(self.items) if item.role is role]


def decode(data: bytes) -> Image.Image:
    """Decode as the worker does (same size limit, same reduced-size JPEG decoding)."""
    return imaging.decode(data, max_pixels=MAX_PIXELS, min_side=imaging.DECODE_MIN_SIDE)


def aspect_class(size: tuple[int, int]) -> str:
    """Which of :data:`ASPECTS` a picture of ``size`` (as decoded: upright) is in.

    >>> aspect_class((640, 480)), aspect_class((1500, 500)), aspect_class((390, 844))
    ('under 2:1', 'wide 3:1+', 'tall 2–3:1')
    """
    w, h = size
    ratio = max(w, h) / max(1, min(w, h))
    if ratio < 2:
        return ASPECTS[0]
    return f"{'wide' if w >= h else 'tall'} {'2–3:1' if ratio < 3 else '3:1+'}"


def blank(picture: Image.Image) -> bool:
    """True when ``picture`` (decoded: transparency is already on white) shows nothing: fewer than one pixel in
    10,000 is more than 2 grey levels from its median. Tells nothing of the guard or the hashes, so the harness
    can exclude such sources from recall without excluding what the guard merely abstains on.

        >>> blank(Image.new("RGB", (64, 64), "white")), blank(Image.new("L", (64, 64), 200))
        (True, True)
        >>> dot = Image.new("L", (64, 64), 255); dot.putpixel((5, 5), 0); blank(dot)  # 1 pixel in 4,096
        False
    """
    grey = np.asarray(picture.convert("L"), dtype=np.int16)
    off = np.abs(grey - np.int16(np.median(grey))) > BLANK_LEVELS
    return float(off.mean()) < BLANK_SHARE


def smooth(picture: Image.Image) -> bool:
    """True when ``picture`` (decoded: transparency is already on white) has no edge: in a thumbnail of at most
    :data:`SMOOTH_SIDE` pixels, fewer than one pixel in 100 stands more than 4 grey levels off the thumbnail blurred
    by 2 pixels (a 3-pixel margin left out). A smooth gradient, a soft glow or a blurred blob is such a picture, as
    every solid colour and gradient the harness generates is, and three in four of its near-blank scans; none of
    its product shots, screenshots, document pages or two-tone colourways is (5.7 % of their pixels at the least).
    The issue this harness answers asks the guard to abstain on gradients, so the per-category recall leaves such
    sources out, as it leaves out blank ones; like :func:`blank` it tells nothing of the guard or the hashes.

        >>> ramp = Image.linear_gradient("L").resize((200, 100))
        >>> edged = ramp.copy(); edged.paste(0, (20, 20, 60, 60))
        >>> smooth(ramp), smooth(edged), smooth(Image.new("RGB", (64, 64), "white"))
        (True, False, True)
    """
    thumb = picture.convert("L")
    thumb.thumbnail((SMOOTH_SIDE, SMOOTH_SIDE), Image.Resampling.BILINEAR)
    grey = np.asarray(thumb, dtype=np.float64)
    blurred = np.asarray(thumb.filter(ImageFilter.GaussianBlur(SMOOTH_BLUR)), dtype=np.float64)
    margin = SMOOTH_BLUR + 1
    off = np.abs(grey - blurred)[margin:-margin, margin:-margin] > SMOOTH_LEVELS
    return not off.size or float(off.mean()) < SMOOTH_SHARE


def hard_pair(picture: Image.Image) -> tuple[Image.Image, Image.Image] | None:
    """Two crops from opposite ends of ``picture``, or None when it is too small or the two ends are one picture
    (a flag, a symmetric icon: the corpus's near-copy check, mirror included, says so), which is no negative."""
    w, h = picture.size
    if min(w, h) < HARD_MIN_SIDE:
        return None
    if w >= h:
        cut = round(w * HARD_FRACTION)
        a, b = picture.crop((0, 0, cut, h)), picture.crop((w - cut, 0, w, h))
    else:
        cut = round(h * HARD_FRACTION)
        a, b = picture.crop((0, 0, w, cut)), picture.crop((0, h - cut, w, h))
    if not all(dedupe([thumbnail(a), thumbnail(b)])):
        return None
    return a, b


def build(
    folder: Path,
    transforms: Sequence[Transform],
    limit: int | None = None,
    negatives: int = low_information.PER_CATEGORY,
) -> Dataset:
    """Read the originals of ``folder`` (at most ``limit``), derive the variants and hard negatives, and add
    ``negatives`` low-information pictures of each category."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return build_files([(p.name, p, None) for p in files], transforms, limit=limit, negatives=negatives, where=folder)


def build_files(
    files: Sequence[tuple[str, Path, str | None]],
    transforms: Sequence[Transform],
    limit: int | None = None,
    negatives: int = low_information.PER_CATEGORY,
    where: Path | str = "the files given",
) -> Dataset:
    """:func:`build` from a list of ``(name, path, category)`` (a corpus's manifest: names are
    ``collection/file``); the categories go to :attr:`Dataset.categories` when every file has one.

    >>> data = build_files([("a/x.png", Path("x.png"), "photo"), ("b/y.png", Path("y.png"), "texture")], TRANSFORMS)
    >>> data.categories
    ('photo', 'texture')
    """
    originals: list[tuple[str, bytes, Image.Image]] = []
    categories: list[str | None] = []
    skipped: list[str] = []
    for name, path, category in files:
        if limit is not None and len(originals) >= limit:
            break
        data = path.read_bytes()
        try:
            originals.append((name, data, decode(data)))
            categories.append(category)
        except PermanentError as exc:
            skipped.append(f"{name} ({exc.reason})")
    if len(originals) < 2:
        raise ValueError(f"{where}: need at least two decodable images, found {len(originals)}")

    items = [Item(name, Role.ORIGINAL, i, data) for i, (name, data, _) in enumerate(originals)]
    for i, (name, data, picture) in enumerate(originals):
        for t in transforms:
            items.append(Item(f"{name}~{t.key}", Role.VARIANT, i, t.apply(picture, data), t.key))
    for i, (name, _, picture) in enumerate(originals):
        pair = hard_pair(picture)
        if pair is not None:
            items.append(Item(f"{name}~end-a", Role.HARD_A, i, jpeg(pair[0])))
            items.append(Item(f"{name}~end-b", Role.HARD_B, i, jpeg(pair[1])))
    if negatives:
        for n in low_information.generate(negatives):
            items.append(Item(n.id, Role.LOW_INFO, -1, n.data, category=n.category))
    known = tuple(c for c in categories if c is not None)
    return Dataset(
        tuple(name for name, _, _ in originals),
        tuple(items),
        tuple(skipped),
        known if len(known) == len(originals) else (),
        tuple(blank(picture) for _, _, picture in originals),
        tuple(smooth(picture) for _, _, picture in originals),
        tuple(aspect_class(picture.size) for _, _, picture in originals),
    )
