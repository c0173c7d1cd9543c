"""The edits people make to a picture before uploading it again, each at named strengths.

Every :class:`Transform` turns a source picture into the *bytes* of a variant, so the variant goes through the
worker's own decoding and hashing like any upload. Geometric and colour edits are saved as JPEG at quality
:data:`DEFAULT_QUALITY` (what a phone or an editor writes); the re-encode family changes only the encoding.

    >>> [f"{t.name} {t.strength}" for t in TRANSFORMS][:3]
    ['copy same bytes', 'zoom 10%', 'zoom 20%']
    >>> variant_bytes = by_key("crop 10%").apply(picture, source_bytes)

All of them are deterministic: the same source gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

DEFAULT_QUALITY = 90

Edit = Callable[[Image.Image], Image.Image]
Encoder = Callable[[Image.Image], bytes]


@dataclass(frozen=True, slots=True)
class Transform:
    """One edit at one strength.

    ``moderate``: the milder strength of an edit (or its only one). ``aligned``: the picture keeps its geometry
    (same content at the same place, up to scale) — the domain of a global perceptual hash. The regression tests
    hold the exact and perceptual stages to every transform that is both; geometric edits are the semantic
    stage's job (docs/quality.md)."""

    name: str
    strength: str
    make: Callable[[Image.Image, bytes], bytes]
    moderate: bool = False
    aligned: bool = True

    @property
    def key(self) -> str:
        return f"{self.name} {self.strength}"

    def apply(self, picture: Image.Image, source_bytes: bytes) -> bytes:
        """The variant's bytes, from the decoded source picture (and its bytes, for byte-level edits)."""
        return self.make(picture, source_bytes)


# Encoders ---------------------------------------------------------------------------------------------------------


def jpeg(image: Image.Image, quality: int = DEFAULT_QUALITY) -> bytes:
    out = io.BytesIO()
    image.convert("RGB" if image.mode not in {"L", "RGB"} else image.mode).save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def webp(image: Image.Image, quality: int = 80) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP", quality=quality, method=4)
    return out.getvalue()


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


# Edits ------------------------------------------------------------------------------------------------------------


def zoom(image: Image.Image, amount: float) -> Image.Image:
    """Scale up by ``1 + amount`` and crop the centre back to the original size."""
    w, h = image.size
    big = image.resize((round(w * (1 + amount)), round(h * (1 + amount))), Image.Resampling.BICUBIC)
    left, top = (big.width - w) // 2, (big.height - h) // 2
    return big.crop((left, top, left + w, top + h))


def crop(image: Image.Image, side: float) -> Image.Image:
    """Cut ``side`` of the width (height) off the left and right (top and bottom); the size shrinks."""
    w, h = image.size
    dx, dy = round(w * side), round(h * side)
    return image.crop((dx, dy, w - dx, h - dy))


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def grayscale(image: Image.Image) -> Image.Image:
    return image.convert("L")


def downscale(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate about the centre, same size; the uncovered corners are black."""
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0))


def hflip(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)


def overlay(image: Image.Image) -> Image.Image:
    """A watermark: a filled logo box and a line of text in the lower right, about 4 % of the area."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    box = (round(w * 0.70), round(h * 0.84), round(w * 0.97), round(h * 0.97))
    draw.rectangle(box, fill=(255, 255, 255), outline=(200, 0, 0), width=max(1, w // 200))
    size = max(8, (box[3] - box[1]) // 2)
    font = ImageFont.load_default(size=size)
    draw.text((box[0] + size // 3, box[1] + size // 3), "© dedup", fill=(200, 0, 0), font=font)
    return out


def side_crop(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """Keep ``box`` (fractions: left, top, right, bottom): an off-centre crop."""
    w, h = image.size
    return image.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def box_overlay(image: Image.Image, area: float, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """A filled box of ``area`` of the picture in its lower-left corner (a sticker, a redaction)."""
    out = image.copy()
    w, h = out.size
    side_w, side_h = round(w * area**0.5), round(h * area**0.5)
    ImageDraw.Draw(out).rectangle(
        (round(w * 0.03), h - side_h - round(h * 0.03), round(w * 0.03) + side_w, h - round(h * 0.03)), fill=fill
    )
    return out


def caption(image: Image.Image) -> Image.Image:
    """A caption bar across the bottom tenth, with a line of text (a meme, a news still)."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    draw.rectangle((0, round(h * 0.9), w, h), fill=(0, 0, 0))
    font = ImageFont.load_default(size=max(8, round(h * 0.06)))
    draw.text((round(w * 0.03), round(h * 0.915)), "when the dedup works", fill=(255, 255, 255), font=font)
    return out


def border(image: Image.Image, side: float, fill: tuple[int, int, int]) -> Image.Image:
    """A uniform frame of ``side`` of the width (height) on every side (a passe-partout); the size grows."""
    w, h = image.size
    dx, dy = round(w * side), round(h * side)
    canvas = Image.new("RGB", (w + 2 * dx, h + 2 * dy), fill)
    canvas.paste(image.convert("RGB"), (dx, dy))
    return canvas


def letterbox(image: Image.Image, side: float = 0.125) -> Image.Image:
    """Black bars: ``side`` of the height above and below, or of the width left and right when taller."""
    w, h = image.size
    if w >= h:
        pad = round(h * side)
        canvas = Image.new("RGB", (w, h + 2 * pad))
        canvas.paste(image, (0, pad))
    else:
        pad = round(w * side)
        canvas = Image.new("RGB", (w + 2 * pad, h))
        canvas.paste(image, (pad, 0))
    return canvas


#: EXIF's Orientation tag, and the value that says "turn the stored pixels a quarter clockwise to show them".
ORIENTATION_TAG = 0x0112
TURN_CLOCKWISE = 6


def exif_rotated(image: Image.Image) -> bytes:
    """A JPEG whose pixels are stored a quarter turn counter-clockwise, with an EXIF Orientation tag that tells a
    viewer to turn them back (what a phone writes for a portrait photo): a viewer that reads the tag, as the
    worker's decoder does, shows ``image``, re-encoded with its JPEG blocks and chroma subsampling turned.

        >>> ImageOps.exif_transpose(Image.open(io.BytesIO(exif_rotated(picture)))).size == picture.size
        True
    """
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = TURN_CLOCKWISE
    out = io.BytesIO()
    turned = image.convert("RGB").transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    turned.save(out, "JPEG", quality=DEFAULT_QUALITY, exif=exif)
    return out.getvalue()


def _edited(edit: Edit, encode: Encoder = jpeg) -> Callable[[Image.Image, bytes], bytes]:
    return lambda picture, _source: encode(edit(picture))


def _same_bytes(_picture: Image.Image, source: bytes) -> bytes:
    return source


def _other_format(picture: Image.Image, source: bytes) -> bytes:
    """PNG ↔ JPEG: a JPEG source becomes a PNG, anything else a JPEG."""
    return png(picture) if is_jpeg(source) else jpeg(picture)


def _percent(value: float) -> str:
    return f"{value * 100:+.0f}%" if value < 0 else f"{value * 100:.0f}%"


def _build() -> tuple[Transform, ...]:
    t: list[Transform] = [Transform("copy", "same bytes", _same_bytes, moderate=True)]
    t += [Transform("zoom", _percent(a), _edited(partial(zoom, amount=a)), a <= 0.1, False) for a in (0.10, 0.20)]
    t += [
        Transform("crop", _percent(s), _edited(partial(crop, side=s)), s <= 0.05, False)
        for s in (0.05, 0.10, 0.20, 0.30)
    ]
    t += [
        Transform("brightness", _percent(f - 1), _edited(partial(brightness, factor=f)), abs(f - 1) <= 0.2)
        for f in (0.6, 0.8, 1.2, 1.4)
    ]
    t.append(Transform("grayscale", "-", _edited(grayscale), moderate=True))
    t += [Transform("jpeg", f"q{q}", _edited(lambda i: i, partial(jpeg, quality=q)), q >= 75) for q in (95, 75, 50)]
    t.append(Transform("format", "png↔jpeg", _other_format, moderate=True))
    t.append(Transform("webp", "q80", _edited(lambda i: i, webp), moderate=True))
    t += [Transform("downscale", f"1/{d}", _edited(partial(downscale, factor=1 / d)), d == 2) for d in (2, 4)]
    t.append(Transform("exif rotation", "90°", _edited(lambda i: i, exif_rotated), moderate=True))
    t += [Transform("rotate", f"{d:+d}°", _edited(partial(rotate, degrees=d)), True, False) for d in (-5, 5)]
    t.append(Transform("mirror", "horizontal", _edited(hflip), moderate=True, aligned=False))
    t.append(Transform("side crop", "15% right", _edited(partial(side_crop, box=(0.0, 0.0, 0.85, 1.0))), True, False))
    t.append(Transform("side crop", "10% top+left", _edited(partial(side_crop, box=(0.1, 0.1, 1.0, 1.0))), True, False))
    t.append(Transform("overlay", "box 2%", _edited(partial(box_overlay, area=0.02)), moderate=True, aligned=False))
    t.append(Transform("overlay", "text+logo", _edited(overlay), moderate=True, aligned=False))
    t.append(Transform("overlay", "caption 10%", _edited(caption), moderate=False, aligned=False))
    t.append(Transform("border", "5% black", _edited(partial(border, side=0.05, fill=(0, 0, 0))), True, False))
    t.append(Transform("border", "10% white", _edited(partial(border, side=0.10, fill=(255, 255, 255))), True, False))
    t.append(Transform("letterbox", "10%", _edited(partial(letterbox, side=0.10)), moderate=True, aligned=False))
    t.append(Transform("letterbox", "12.5%", _edited(letterbox), moderate=False, aligned=False))
    return tuple(t)


#: Every transform, in report order.
TRANSFORMS: tuple[Transform, ...] = _build()

#: What the exact and perceptual stages must catch: moderate strength, geometry kept.
REGRESSION = tuple(t for t in TRANSFORMS if t.moderate and t.aligned)


def by_key(key: str) -> Transform:
    """The transform called ``"name strength"``, e.g. ``"crop 10%"``."""
    for transform in TRANSFORMS:
        if transform.key == key:
            return transform
    raise KeyError(key)
