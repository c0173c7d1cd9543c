"""Distinct pictures that carry little information: the ones a perceptual hash confuses.

A harness of photos only proves nothing about the pictures that break a global hash. Each category here is a
family of *different* pictures that look alike to pHash (imagehash issue #134: a blue and a white picture hash
alike; czkawka PR #2059: a light and a dark region hash alike whatever is inside them). Every pair of them is a
negative pair of the harness, as is every pair of one of them and a photo.

    >>> pictures = generate(per_category=4)
    >>> sorted({p.category for p in pictures})[:3]
    ['bimodal colourway', 'document page', 'gradient']
    >>> pictures[0].data[:4]            # encoded bytes, decoded by the worker's own decoder
    b'\\x89PNG'

Everything is drawn from a seeded generator: the same call gives the same bytes.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tooling.eval.transforms import jpeg, png

SIZE = (640, 480)
SEED = 20261201

Rng = np.random.Generator


@dataclass(frozen=True, slots=True)
class Negative:
    id: str
    category: str
    data: bytes


def _colour(
    rng: Rng, saturation: tuple[float, float] = (0.5, 1.0), value: tuple[float, float] = (0.4, 1.0)
) -> tuple[int, int, int]:
    h = float(rng.uniform(0, 1))
    s = float(rng.uniform(*saturation))
    v = float(rng.uniform(*value))
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _hue(h: float, s: float = 0.8, v: float = 0.85) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _words(rng: Rng, n: int) -> str:
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    return " ".join("".join(letters[int(i)] for i in rng.integers(0, 26, int(rng.integers(2, 9)))) for _ in range(n))


# Categories ------------------------------------------------------------------------------------------------------


def solid(i: int, rng: Rng) -> bytes:
    """A solid colour: the first ones are the named colours, then evenly spaced hues and greys."""
    named = [(255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (0, 128, 0), (255, 255, 0), (128, 128, 128)]
    if i < len(named):
        colour = named[i]
    elif i % 3 == 0:
        level = round(255 * ((i * 37) % 100) / 100)
        colour = (level, level, level)
    else:
        colour = _hue(i * 0.137, s=float(rng.uniform(0.2, 1.0)), v=float(rng.uniform(0.2, 1.0)))
    return png(Image.new("RGB", SIZE, colour))


def gradient(i: int, rng: Rng) -> bytes:
    """A linear gradient between two colours in a random direction, or a radial one."""
    w, h = SIZE
    a = np.array(_colour(rng, value=(0.1, 1.0)), dtype=np.float64)
    b = np.array(_colour(rng, value=(0.1, 1.0)), dtype=np.float64)
    ys, xs = np.mgrid[0:h, 0:w]
    if i % 4 == 3:
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        t = np.hypot(xs - cx, ys - cy) / np.hypot(w, h)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
    t = (t - t.min()) / (np.ptp(t) or 1.0)
    pixels = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    return jpeg(Image.fromarray(pixels.astype(np.uint8), "RGB"))


def near_blank_scan(i: int, rng: Rng) -> bytes:
    """Paper: off-white, scanner shading and grain, now and then a faint mark, a fold or a punched hole."""
    w, h = SIZE[1], SIZE[0]  # portrait
    base = rng.uniform(225, 250)
    ys, xs = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, 2 * np.pi)
    shade = (xs * np.cos(angle) + ys * np.sin(angle)) / max(w, h) * rng.uniform(0, 12)
    grey = base - shade + rng.normal(0, rng.uniform(0.5, 3.0), (h, w))
    page = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L").convert("RGB")
    draw = ImageDraw.Draw(page)
    kind = i % 4
    if kind == 1:  # a faint pencil mark
        x, y = int(rng.integers(40, w - 80)), int(rng.integers(40, h - 40))
        end = (x + int(rng.integers(20, 80)), y + int(rng.integers(-10, 10)))
        draw.line((x, y, *end), fill=(200, 200, 200), width=2)
    elif kind == 2:  # a fold line
        fold = int(rng.integers(h // 4, 3 * h // 4))
        draw.line((0, fold, w, fold), fill=(215, 215, 215), width=1)
    elif kind == 3:  # punched holes
        x = int(rng.integers(15, 40))
        for hole in (h // 4, h // 2, 3 * h // 4):
            draw.ellipse((x, hole - 8, x + 16, hole + 8), fill=(60, 60, 60))
    return jpeg(page.filter(ImageFilter.GaussianBlur(0.6)))


def transparent_overlay(i: int, rng: Rng) -> bytes:
    """A mostly transparent PNG: a small logo, a line of text or a frame (composited on white by the worker)."""
    w, h = SIZE
    layer = Image.new("RGBA", SIZE, (int(rng.integers(0, 256)), 0, 0, 0))  # stored colour under alpha 0 varies
    draw = ImageDraw.Draw(layer)
    colour = (*_colour(rng), 255)
    kind = i % 3
    if kind == 0:
        x, y = int(rng.integers(0, w - 120)), int(rng.integers(0, h - 120))
        size = int(rng.integers(30, 110))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + size, y + size), fill=colour)
        else:
            draw.rectangle((x, y, x + size, y + size // 2), fill=colour)
    elif kind == 1:
        font = ImageFont.load_default(size=int(rng.integers(18, 40)))
        draw.text(
            (int(rng.integers(10, w // 2)), int(rng.integers(10, h - 50))), _words(rng, 3), fill=colour, font=font
        )
    else:
        width = int(rng.integers(3, 15))
        draw.rectangle((width, width, w - width, h - width), outline=colour, width=width)
        draw.text((w // 2 - 40, h - 40), _words(rng, 1), fill=colour, font=ImageFont.load_default(size=20))
    return png(layer)


def product_on_white(i: int, rng: Rng) -> bytes:
    """One object on a white background, with a soft shadow: a box, a bottle, a ball or a shoe-like blob."""
    w, h = SIZE
    canvas = Image.new("RGB", SIZE, (255, 255, 255))
    cx, cy = w / 2 + rng.uniform(-40, 40), h / 2 + rng.uniform(-30, 30)
    sw, sh = rng.uniform(0.2, 0.5) * w, rng.uniform(0.3, 0.7) * h
    shadow = Image.new("L", SIZE, 0)
    ImageDraw.Draw(shadow).ellipse((cx - sw / 2, cy + sh / 2 - 12, cx + sw / 2, cy + sh / 2 + 12), fill=90)
    canvas.paste((200, 200, 200), mask=shadow.filter(ImageFilter.GaussianBlur(8)))
    draw = ImageDraw.Draw(canvas)
    body = _colour(rng, saturation=(0.0, 1.0), value=(0.2, 0.95))
    kind = i % 4
    box = (cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2)
    if kind == 0:
        draw.rectangle(box, fill=body)
        draw.rectangle((box[0] + sw * 0.15, cy - sh * 0.1, box[2] - sw * 0.15, cy + sh * 0.15), fill=_colour(rng))
    elif kind == 1:
        neck = sw * 0.18
        draw.rectangle((cx - neck, box[1], cx + neck, box[1] + sh * 0.25), fill=body)
        draw.rounded_rectangle((box[0], box[1] + sh * 0.2, box[2], box[3]), radius=int(sw * 0.2), fill=body)
        draw.rectangle((box[0], cy, box[2], cy + sh * 0.18), fill=_colour(rng))
    elif kind == 2:
        r = min(sw, sh) / 2
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=body)
    else:
        draw.polygon(
            [(box[0], box[3]), (box[2], box[3]), (box[2], cy), (cx, box[1] + sh * 0.3), (box[0], box[1])], fill=body
        )
    return jpeg(canvas.filter(ImageFilter.GaussianBlur(1.0)))


def _detail_field(rng: Rng, shape: tuple[int, int], blur: float) -> npt.NDArray[np.float64]:
    """Smooth random structure in [0, 1]: blobs at the scale of ``blur`` pixels."""
    noise = Image.fromarray((rng.random(shape) * 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(blur))
    field = np.asarray(noise, dtype=np.float64)
    scaled: npt.NDArray[np.float64] = (field - field.min()) / (np.ptp(field) or 1.0)
    return scaled


def bimodal_colourway(i: int, rng: Rng) -> bytes:
    """A light and a dark region, each with its own detail (a sketch beside its finished version, a light and a
    dark colourway of one pattern). Consecutive pictures share the split and differ in detail, or share the
    detail and differ in colour: both are different pictures."""
    layout = np.random.default_rng([SEED, i // 2])
    w, h = SIZE
    ys, xs = np.mgrid[0:h, 0:w]
    angle = [0.0, np.pi / 2, np.pi / 4, -np.pi / 6][i // 2 % 4]
    offset = layout.uniform(0.4, 0.6)
    side = (xs / w - 0.5) * np.cos(angle) + (ys / h - 0.5) * np.sin(angle) + 0.5 > offset
    same_detail = i % 4 >= 2  # pictures 2k and 2k+1 of every second layout: one pattern in two colourways
    detail_rng = layout if same_detail else rng
    detail = _detail_field(detail_rng, (h, w), float(detail_rng.uniform(3, 10)))
    hue = layout.uniform(0, 1) + (0.45 if (same_detail and i % 2) else 0.0)
    light = np.array(_hue(hue, s=0.3, v=0.95), dtype=np.float64)
    dark = np.array(_hue(hue + 0.08, s=0.7, v=0.3), dtype=np.float64)
    texture = (detail[..., None] - 0.5) * 70
    pixels = np.where(side[..., None], light + texture, dark + texture * 0.6)
    return jpeg(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB"))


def document_page(i: int, rng: Rng) -> bytes:
    """A page of text: a heading and paragraphs of different words in one of two layouts, sometimes a table."""
    w, h = 620, 877  # A4 at 75 dpi
    page = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=14)
    heading = ImageFont.load_default(size=26)
    margin = 60 if i % 2 else 80
    y = margin
    draw.text((margin, y), _words(rng, 4).title(), fill=(0, 0, 0), font=heading)
    y += 50
    while y < h - margin - 20:
        lines = int(rng.integers(3, 9))
        for line in range(lines):
            if y >= h - margin - 20:
                break
            words = int(rng.integers(6, 11)) if line < lines - 1 else int(rng.integers(2, 7))
            draw.text((margin, y), _words(rng, words), fill=(20, 20, 20), font=font)
            y += 19
        y += 14
        if i % 5 == 0 and rng.random() < 0.2:  # a table
            for _row in range(5):
                draw.rectangle((margin, y, w - margin, y + 20), outline=(0, 0, 0))
                draw.text((margin + 5, y + 3), _words(rng, 3), fill=(0, 0, 0), font=font)
                y += 20
            y += 14
    return png(page) if i % 3 == 0 else jpeg(page.convert("L"))


def screenshot(i: int, rng: Rng) -> bytes:
    """An application window: title bar, side bar and content (text, cards) in one of three layouts and two
    themes."""
    w, h = 800, 500
    dark = i % 2 == 1
    background = (30, 30, 34) if dark else (246, 246, 248)
    text = (220, 220, 220) if dark else (30, 30, 30)
    accent = _hue(float(rng.uniform(0, 1)), s=0.6, v=0.8)
    shot = Image.new("RGB", (w, h), background)
    draw = ImageDraw.Draw(shot)
    font = ImageFont.load_default(size=13)
    draw.rectangle((0, 0, w, 32), fill=accent)
    draw.text((12, 9), _words(rng, 3), fill=(255, 255, 255), font=font)
    layout = i % 3
    left = 0
    if layout in (0, 2):
        left = 180
        draw.rectangle((0, 32, left, h), fill=(45, 45, 50) if dark else (230, 230, 235))
        for row in range(int(rng.integers(5, 14))):
            draw.text((14, 48 + row * 24), _words(rng, 2), fill=text, font=font)
    y = 50
    if layout == 2:  # cards
        for card in range(int(rng.integers(2, 7))):
            x0 = left + 20 + (card % 3) * 200
            y0 = 50 + (card // 3) * 170
            draw.rounded_rectangle((x0, y0, x0 + 180, y0 + 150), radius=8, outline=text, width=1)
            draw.text((x0 + 10, y0 + 10), _words(rng, 2), fill=text, font=font)
    else:
        while y < h - 30:
            draw.text((left + 20, y), _words(rng, int(rng.integers(3, 12))), fill=text, font=font)
            y += int(rng.integers(18, 40))
    return png(shot)


#: The colourways of one product (:func:`product_colourway`), in order: its base shade; a lighter or darker shade
#: of the same hue, 1.8 times and more apart in value (beyond the ±40 % brightness edits the harness's copies
#: carry: a smaller step of lightness alone, on an unchanged white background, is that edit pixel for pixel);
#: another hue, a fifth to a half of the way round; and a pastel.
COLOURWAYS = ("base", "other shade", "other hue", "pastel")
#: The value of a product's base shade, and of its other shade: a dark product gets a light one, a light a dark one.
DARK_VALUES, LIGHT_VALUES = (0.25, 0.45), (0.82, 0.95)


def product_colourway(i: int, rng: Rng) -> bytes:
    """One product in one of its :data:`COLOURWAYS`: pictures 4k to 4k+3 share the silhouette, its place, the
    shadow, the accent and the backdrop (white, or an off-white or light grey studio backdrop) and differ in the
    body's colour only. Every pair is two products, as a catalogue lists one per colour."""
    product = np.random.default_rng([SEED, STREAMS["product colourway"], i // len(COLOURWAYS)])
    hue, saturation = float(product.uniform(0, 1)), float(product.uniform(0.45, 0.95))
    dark = bool(product.random() < 0.5)
    value = float(product.uniform(*(DARK_VALUES if dark else LIGHT_VALUES)))
    other_value = float(product.uniform(*(LIGHT_VALUES if dark else DARK_VALUES)))
    turn = float(product.uniform(0.2, 0.5))
    way = COLOURWAYS[i % len(COLOURWAYS)]
    if way == "other shade":
        value = other_value
    elif way == "other hue":
        hue += turn
    elif way == "pastel":
        saturation, value = saturation * 0.35, 0.95
    body = _hue(hue, s=saturation, v=value)
    w, h = SIZE
    backdrop = [(255, 255, 255), (255, 255, 255), (248, 246, 242), (236, 236, 236)][int(product.integers(0, 4))]
    canvas = Image.new("RGB", SIZE, backdrop)
    cx, cy = w / 2 + product.uniform(-40, 40), h / 2 + product.uniform(-30, 30)
    sw, sh = product.uniform(0.2, 0.5) * w, product.uniform(0.3, 0.7) * h
    shadow = Image.new("L", SIZE, 0)
    ImageDraw.Draw(shadow).ellipse((cx - sw / 2, cy + sh / 2 - 12, cx + sw / 2, cy + sh / 2 + 12), fill=90)
    canvas.paste(tuple(round(c * 0.78) for c in backdrop), mask=shadow.filter(ImageFilter.GaussianBlur(8)))
    draw = ImageDraw.Draw(canvas)
    accent = _colour(product)
    box = (cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2)
    kind = int(product.integers(0, 4))
    if kind == 0:  # a box with a label
        draw.rectangle(box, fill=body)
        draw.rectangle((box[0] + sw * 0.15, cy - sh * 0.1, box[2] - sw * 0.15, cy + sh * 0.15), fill=accent)
    elif kind == 1:  # a bottle with a band
        neck = sw * 0.18
        draw.rectangle((cx - neck, box[1], cx + neck, box[1] + sh * 0.25), fill=body)
        draw.rounded_rectangle((box[0], box[1] + sh * 0.2, box[2], box[3]), radius=int(sw * 0.2), fill=body)
        draw.rectangle((box[0], cy, box[2], cy + sh * 0.18), fill=accent)
    elif kind == 2:  # a ball
        r = min(sw, sh) / 2
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=body)
    else:  # a shoe-like blob with a sole
        draw.polygon(
            [(box[0], box[3]), (box[2], box[3]), (box[2], cy), (cx, box[1] + sh * 0.3), (box[0], box[1])], fill=body
        )
        draw.rectangle((box[0], box[3] - sh * 0.08, box[2], box[3]), fill=accent)
    return jpeg(canvas.filter(ImageFilter.GaussianBlur(1.0)))


CATEGORIES: dict[str, Callable[[int, Rng], bytes]] = {
    "solid colour": solid,
    "gradient": gradient,
    "near-blank scan": near_blank_scan,
    "transparent overlay": transparent_overlay,
    "product on white": product_on_white,
    "bimodal colourway": bimodal_colourway,
    "document page": document_page,
    "screenshot": screenshot,
    "product colourway": product_colourway,
}
#: Each category's random stream, fixed when it joined: a new category leaves every other one's pictures as they
#: were (the streams were once the categories' places in alphabetical order).
STREAMS = {
    "bimodal colourway": 0,
    "document page": 1,
    "gradient": 2,
    "near-blank scan": 3,
    "product on white": 4,
    "screenshot": 5,
    "solid colour": 6,
    "transparent overlay": 7,
    "product colourway": 8,
}

PER_CATEGORY = 40


def generate(per_category: int = PER_CATEGORY, categories: tuple[str, ...] | None = None) -> list[Negative]:
    """``per_category`` distinct pictures of each category (all of :data:`CATEGORIES` by default)."""
    out = []
    for name in sorted(categories or CATEGORIES):
        make = CATEGORIES[name]
        rng = np.random.default_rng([SEED, STREAMS[name]])
        slug = name.replace(" ", "-")
        for i in range(per_category):
            out.append(Negative(f"{slug}-{i:03d}", name, make(i, rng)))
    return out
