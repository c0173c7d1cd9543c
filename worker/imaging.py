"""Decode untrusted bytes into an upright RGB picture, or fail with a clear reason.

    >>> picture = decode(jpeg_bytes, max_pixels=100_000_000, min_side=232)
    >>> picture.mode
    'RGB'

* Only common photo formats are tried (:data:`FORMATS`); anything else is ``undecodable``.
* Dimensions are checked from the header before any pixel is decoded (``too_many_pixels``), and Pillow's own
  decompression-bomb warning is an error too.
* JPEGs are decoded at reduced size when that keeps both sides ≥ ``min_side`` (DCT scaling: much faster).
* EXIF orientation is applied; the first frame of an animation is used; every mode becomes 8-bit RGB
  (transparency composited on white, 16-bit scaled rather than clipped, CMYK/palette/grey converted).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from worker.errors import PermanentError, TransientError

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "JPEG2000", "QOI")

BACKGROUND = (255, 255, 255)

#: The worker decodes JPEGs at reduced size as long as both sides stay at least this large (the model's resize
#: target); the quality harness decodes with the same value.
DECODE_MIN_SIDE = 256

_16_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}

warnings.simplefilter("error", Image.DecompressionBombWarning)


def configure(max_pixels: int) -> None:
    """Align Pillow's process-wide decompression-bomb limit with ours (call once at start)."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def decode(data: bytes, *, max_pixels: int, min_side: int = 0) -> Image.Image:
    """Decode ``data`` into an RGB image. Raises :class:`PermanentError` with reason ``empty``,
    ``undecodable`` or ``too_many_pixels``, or :class:`TransientError` when memory runs out."""
    if not data:
        raise PermanentError("empty", "the object has no bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=_registered(FORMATS))
        width, height = image.size
        if width * height > max_pixels:
            raise PermanentError("too_many_pixels", f"{width}x{height} is over the limit of {max_pixels} pixels")
        if min_side and image.format == "JPEG":
            image.draft(None, (min_side, min_side))
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except PermanentError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PermanentError("too_many_pixels", str(exc)) from exc
    except MemoryError as exc:  # the process is short of memory now; the image may well fit later
        raise TransientError("memory", "out of memory while decoding") from exc
    except UnidentifiedImageError as exc:
        raise PermanentError("undecodable", "not an image in a supported format") from exc
    except Exception as exc:
        raise PermanentError("undecodable", f"{type(exc).__name__}: {exc}") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping or dropping transparency onto black."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _16_BIT or mode == "I":
        values = np.asarray(image, dtype=np.int64)
        top = 65535 if mode in _16_BIT or values.max(initial=0) > 255 else 255
        grey = (np.clip(values, 0, top) * 255 // top).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
        span = high - low or 1.0
        return Image.fromarray(((values - low) * 255 / span).astype(np.uint8), mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _registered(names: tuple[str, ...]) -> list[str]:
    Image.init()
    return [name for name in names if name in Image.OPEN]
