"""Real sample photos and the copies people make of them, for the demo, the benchmark and the tests.

The photos ship inside scikit-image's wheel (the ``samples`` extra): no download. :func:`upload_set` builds a
labelled set — originals, exact copies, resized / grayscale / brightened / re-encoded copies, unrelated
photos and one corrupt file — in upload order, each with the outcome a correct service gives it::

    >>> [(s.key, s.expect) for s in upload_set()][:2]
    [('astronaut.jpg', Expect('unique')), ('chelsea.jpg', Expect('unique'))]
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from worker.outcome import Outcome

#: Photos whose perceptual hashes are far apart (≥ 20 of 64 bits). scikit-image's chessboard pair and its
#: stereo motorcycle pair are left out: each pair is, honestly, one picture twice.
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "ihc.png",
    "horse.png",
    "gravel.png",
    "brick.png",
    "grass.png",
    "page.png",
    "retina.jpg",
    "cell.png",
)


@dataclass(frozen=True, slots=True)
class Expect:
    status: str  # unique | duplicate | error
    original: str | None = None
    kind: str | None = None
    note: str | None = None  # e.g. "low-information": the outcome must carry it

    def __repr__(self) -> str:
        extra = f", {self.original!r}, {self.kind!r}" if self.original else ""
        return f"Expect({self.status!r}{extra})"

    def matches(self, outcome: Outcome, bucket: str) -> bool:
        """Whether ``outcome`` is what was expected, for a sample uploaded to ``bucket``."""
        return (
            outcome.status == self.status
            and (self.original is None or outcome.original == f"{bucket}/{self.original}")
            and (self.kind is None or outcome.kind == self.kind)
            and (self.note is None or self.note in outcome.notes)
        )


@dataclass(frozen=True, slots=True)
class Sample:
    key: str
    data: bytes
    content_type: str
    expect: Expect


def data_dir() -> Path:
    spec = find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the sample photos need scikit-image: pip install 'image-dedup-worker[samples]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@cache
def photo(name: str) -> Image.Image:
    """A bundled photo as RGB (e.g. ``photo("chelsea.png")``)."""
    with Image.open(data_dir() / name) as image:
        return image.convert("RGB")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def resized(image: Image.Image, factor: float = 0.5) -> Image.Image:
    size = (max(1, int(image.width * factor)), max(1, int(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def grayscale(image: Image.Image) -> Image.Image:
    return image.convert("L")


def brightened(image: Image.Image, factor: float = 1.3) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


#: name → (how the copy is made from the original photo, how it is encoded)
COPIES: dict[str, tuple[Callable[[Image.Image], Image.Image], Callable[[Image.Image], bytes]]] = {
    "small": (resized, jpeg),
    "gray": (grayscale, jpeg),
    "bright": (brightened, jpeg),
    "q50": (lambda image: image, lambda image: jpeg(image, 50)),
    "png": (lambda image: image, png),
}


def upload_set(
    prefix: str = "", originals: Sequence[str] = PHOTOS[:4], unrelated: Sequence[str] = PHOTOS[4:7]
) -> list[Sample]:
    """Originals, then their copies, then unrelated photos and a corrupt file — in upload order."""
    chosen = list(originals)
    samples = [Sample(f"{prefix}{stem(n)}.jpg", jpeg(photo(n)), "image/jpeg", Expect("unique")) for n in chosen]
    for i, name in enumerate(chosen):
        source = samples[i]
        exact = Expect("duplicate", source.key, "exact")
        samples.append(Sample(f"{prefix}{stem(name)}-copy.jpg", source.data, "image/jpeg", exact))
        for copy_name, (make, encode) in COPIES.items():
            ext, mime = ("png", "image/png") if encode is png else ("jpg", "image/jpeg")
            data = encode(make(photo(name)))
            expect = Expect("duplicate", source.key, "perceptual")
            samples.append(Sample(f"{prefix}{stem(name)}-{copy_name}.{ext}", data, mime, expect))
    for name in unrelated:
        samples.append(Sample(f"{prefix}{stem(name)}.jpg", jpeg(photo(name)), "image/jpeg", Expect("unique")))
    samples.append(Sample(f"{prefix}notes.jpg", b"this is not a JPEG", "image/jpeg", Expect("error")))
    return samples


def trust_set(prefix: str = "", mirrored: str = PHOTOS[0]) -> list[Sample]:
    """What the guard and the mirror hash are for, to upload after :func:`upload_set`: two solid colours, which
    a bare perceptual hash calls duplicates of each other (they are not: both unique, noted low-information), and
    a mirrored copy of ``mirrored``'s upload, which it misses (a duplicate)."""
    low = Expect("unique", note="low-information")
    red, blue = Image.new("RGB", (640, 480), (220, 20, 20)), Image.new("RGB", (640, 480), (20, 40, 220))
    mirror = Expect("duplicate", f"{prefix}{stem(mirrored)}.jpg", "perceptual")
    return [
        Sample(f"{prefix}solid-red.png", png(red), "image/png", low),
        Sample(f"{prefix}solid-blue.png", png(blue), "image/png", low),
        Sample(f"{prefix}{stem(mirrored)}-mirror.jpg", jpeg(ImageOps.mirror(photo(mirrored))), "image/jpeg", mirror),
    ]


def illustration(width: int = 640, height: int = 480) -> Image.Image:
    """Flat clip art, drawn the same every time: a flat blue sky, a green hill, a yellow sun, a red house with a
    dark roof, a door and two windows, each a flat colour with a dark outline and nothing else (no gradient, no
    texture, no noise)."""
    image = Image.new("RGB", (width, height), (70, 150, 230))
    draw = ImageDraw.Draw(image)
    line, x, y = (30, 25, 25), width / 640, height / 480

    def at(*points: float) -> list[tuple[float, float]]:
        return [(points[i] * x, points[i + 1] * y) for i in range(0, len(points), 2)]

    draw.ellipse(at(470, 40, 590, 160), fill=(250, 210, 40), outline=line, width=4)
    hill = at(0, 330, 160, 250, 330, 290, 480, 230, 640, 300, 640, 480, 0, 480)
    draw.polygon(hill, fill=(60, 170, 60), outline=line, width=4)
    draw.rectangle(at(140, 250, 330, 400), fill=(200, 40, 40), outline=line, width=4)
    draw.polygon(at(120, 255, 235, 160, 350, 255), fill=(70, 40, 40), outline=line, width=4)
    draw.rectangle(at(215, 320, 260, 400), fill=(120, 70, 30), outline=line, width=4)
    for left in (160, 275):
        draw.rectangle(at(left, 275, left + 40, 310), fill=(240, 240, 200), outline=line, width=4)
    return image


def darkened(image: Image.Image, factor: float = 0.11) -> Image.Image:
    """``image`` at ``factor`` of its brightness: a low-key shot, most of it near black around a dim subject."""
    return ImageEnhance.Brightness(image).enhance(factor)


def descriptor_set(prefix: str = "", dark: str = "motorcycle_left.png") -> list[Sample]:
    """What the perceptual descriptor is for, to upload after :func:`trust_set`: a flat illustration
    (:func:`illustration`) and its 320-px thumbnail, and a dark photo (``dark`` at 11 % brightness, a photo no
    other set uploads) and its JPEG q40 re-encode; each copy a duplicate of its original."""
    flat, night = illustration(), darkened(photo(dark))
    thumb = flat.resize((320, flat.height * 320 // flat.width), Image.Resampling.LANCZOS)
    dark_key = f"{prefix}{stem(dark).replace('_', '-')}-dark"
    return [
        Sample(f"{prefix}illustration.png", png(flat), "image/png", Expect("unique")),
        Sample(
            f"{prefix}illustration-thumb.png",
            png(thumb),
            "image/png",
            Expect("duplicate", f"{prefix}illustration.png", "perceptual"),
        ),
        Sample(f"{dark_key}.jpg", jpeg(night), "image/jpeg", Expect("unique")),
        Sample(
            f"{dark_key}-q40.jpg", jpeg(night, 40), "image/jpeg", Expect("duplicate", f"{dark_key}.jpg", "perceptual")
        ),
    ]
