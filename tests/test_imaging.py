"""Decoding untrusted bytes: every mode becomes RGB, hostile input becomes a clear reason."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.helpers import encoded, png_header_only
from tooling.samples import jpeg, photo
from worker.errors import PermanentError, TransientError
from worker.hashing import perceptual_hash
from worker.imaging import decode

LIMIT = 50_000_000


def test_a_jpeg_decodes_to_rgb() -> None:
    image = decode(jpeg(photo("chelsea.png")), max_pixels=LIMIT)
    assert image.mode == "RGB"
    assert image.size == (451, 300)


def test_large_jpegs_are_decoded_at_reduced_size_but_never_below_min_side() -> None:
    big = photo("astronaut.png").resize((2048, 2048))
    image = decode(jpeg(big), max_pixels=LIMIT, min_side=256)
    assert 256 <= min(image.size) < 2048


def test_sixteen_bit_greys_are_scaled_not_clipped() -> None:
    ramp = (np.arange(256 * 16, dtype=np.uint32).reshape(16, 256) * 16).astype(np.uint16)
    image = decode(encoded(Image.fromarray(ramp), "PNG"), max_pixels=LIMIT)
    values = np.asarray(image)[..., 0]
    assert image.mode == "RGB"
    assert values.min() == 0
    assert values.max() >= 250  # clipping would saturate at 255 from value 255 on
    assert len(np.unique(values)) > 200


def test_cmyk_jpeg_becomes_rgb() -> None:
    image = decode(encoded(photo("coffee.png").convert("CMYK"), "JPEG"), max_pixels=LIMIT)
    assert image.mode == "RGB"


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    image = decode(encoded(rgba, "PNG"), max_pixels=LIMIT)
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_palette_png_with_transparency() -> None:
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    image = decode(encoded(palette, "PNG", transparency=0), max_pixels=LIMIT)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 1)) == (10, 200, 30)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_use_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, _, blue = np.asarray(decode(data, max_pixels=LIMIT))[8, 8]
    assert red > 200
    assert blue < 50


def test_one_pixel_image() -> None:
    assert decode(encoded(Image.new("L", (1, 1), 128), "PNG"), max_pixels=LIMIT).size == (1, 1)


def test_exif_orientation_is_applied_so_a_rotated_photo_matches_its_upright_copy() -> None:
    upright = photo("chelsea.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # how a camera stores a portrait shot
    rotated = decode(encoded(stored, "JPEG", exif=exif.tobytes(), quality=95), max_pixels=LIMIT)
    straight = decode(jpeg(upright, 95), max_pixels=LIMIT)
    assert rotated.size == straight.size
    assert (perceptual_hash(rotated) ^ perceptual_hash(straight)).bit_count() <= 4


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\xff\xd8\xff\xe0 random bytes with a JPEG start", "undecodable"),
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n", "undecodable"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "undecodable"),
        (bytes(range(256)) * 8, "undecodable"),
    ],
)
def test_bytes_that_are_not_an_image_get_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(PermanentError) as caught:
        decode(data, max_pixels=LIMIT)
    assert caught.value.reason == reason


def test_running_out_of_memory_is_transient_not_a_verdict_on_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    data = jpeg(photo("coffee.png"))

    def exhausted(*_: object, **__: object) -> None:
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", exhausted)
    with pytest.raises(TransientError) as caught:
        decode(data, max_pixels=LIMIT)
    assert caught.value.reason == "memory"


def test_a_truncated_jpeg_is_undecodable() -> None:
    data = jpeg(photo("coffee.png"))
    with pytest.raises(PermanentError) as caught:
        decode(data[: len(data) // 2], max_pixels=LIMIT)
    assert caught.value.reason == "undecodable"


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    with pytest.raises(PermanentError) as caught:
        decode(png_header_only(100_000, 100_000), max_pixels=LIMIT)
    assert caught.value.reason == "too_many_pixels"


def test_our_pixel_limit_applies_below_pillows() -> None:
    with pytest.raises(PermanentError) as caught:
        decode(png_header_only(5_000, 5_000), max_pixels=10_000_000)
    assert caught.value.reason == "too_many_pixels"
    assert "5000x5000 is over the limit of 10000000 pixels" in caught.value.detail
