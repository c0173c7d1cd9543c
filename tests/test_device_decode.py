"""The device decode path (worker.device_decode), run on the CPU through the same code as on CUDA: each image gets
the CPU path's outcome, batch-mates are unaffected, and the fingerprints agree within the documented tolerance."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from PIL import Image, ImageOps
from prometheus_client import REGISTRY

from tests.helpers import BUCKET, encoded
from tests.rig import build
from tooling.eval.decode_agreement import compare, jpegs
from tooling.eval.sources import distinct_images
from tooling.localstack import LocalStack
from tooling.samples import jpeg, photo, png, resized
from worker import device_decode, imaging
from worker.decision import Kind, Status, similarity
from worker.device_decode import Decoded, decode_batch, decode_plans, draft_scale, orient, plan
from worker.embedding import Embedder, preprocess
from worker.errors import PermanentError, TransientError
from worker.fingerprint import Fingerprint, fingerprint
from worker.index import Index

CPU = torch.device("cpu")
LIMIT = 4_000_000


def pixels_of(image: Image.Image) -> npt.NDArray[np.int64]:
    return np.asarray(image, dtype=np.int64)


def cpu_path(data: bytes, max_pixels: int = LIMIT) -> Image.Image | PermanentError | TransientError:
    try:
        return imaging.decode(data, max_pixels=max_pixels, min_side=imaging.DECODE_MIN_SIDE)
    except (PermanentError, TransientError) as exc:
        return exc


def rotated_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """A JPEG that shows ``upright`` once its EXIF orientation is applied (how a camera stores a turned shot)."""
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(upright.transpose(undo[orientation]), "JPEG", quality=92, exif=exif.tobytes())


def enlarged(name: str, size: tuple[int, int]) -> Image.Image:
    """A sample photo at camera size, with a little seeded noise for detail down to the pixel."""
    big = np.asarray(photo(name).resize(size, Image.Resampling.BICUBIC), dtype=np.float64)
    noise = np.random.default_rng(0).normal(0.0, 2.0, (size[1], size[0], 1))
    return Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8))


def same_fingerprint(a: Fingerprint, b: Fingerprint) -> bool:
    """Fingerprints hold arrays (no ``==``): the same descriptors, bit for bit, and the same guard values."""
    return (
        np.array_equal(a.dct, b.dct)
        and np.array_equal(a.look.variants, b.look.variants)
        and (a.look.information, a.look.split, a.look.texture, a.look.colour)
        == (b.look.information, b.look.split, b.look.texture, b.look.colour)
    )


def test_each_image_of_a_batch_gets_the_cpu_paths_outcome() -> None:
    good = jpeg(photo("chelsea.png"))
    items = {
        "good": good,
        "corrupt": b"\xff\xd8\xff garbage",
        "truncated": good[: len(good) // 2],
        "png": png(photo("coffee.png")),
        "cmyk": encoded(photo("coffee.png").convert("CMYK"), "JPEG"),
        "rotated": rotated_jpeg(photo("rocket.jpg"), 6),
        "grey": jpeg(photo("coins.png").convert("L")),
        "over the limit": jpeg(Image.new("RGB", (2100, 2000), (90, 120, 40))),
        "empty": b"",
        "good again": jpeg(photo("horse.png")),
        "large": jpeg(photo("astronaut.png").resize((1100, 1100))),  # reduced at 1/4
    }
    results = decode_batch(list(items.values()), device=CPU, max_pixels=LIMIT)
    for (name, data), result in zip(items.items(), results, strict=True):
        expected = cpu_path(data)
        if isinstance(expected, Exception):
            assert isinstance(result, type(expected)), name
            assert result.reason == expected.reason, name
            continue
        assert isinstance(result, Decoded), name
        assert result.picture.size == expected.size, name
        if name == "large":
            seen, cpu = fingerprint(result.picture), fingerprint(expected)
            assert similarity(seen.dct, cpu.dct) >= device_decode.TOLERANCE
        else:  # decoded at full size, where both paths' pictures are the same to the bit
            assert np.array_equal(pixels_of(result.picture), pixels_of(expected)), name
        assert result.pixels.shape == (3, 224, 224), name
        assert result.pixels.dtype == torch.uint8, name
        assert result.pixels.device == CPU, name
    reasons = {n: r.reason for n, r in zip(items, results, strict=True) if isinstance(r, PermanentError)}
    assert reasons == {
        "corrupt": "undecodable",
        "truncated": "undecodable",
        "over the limit": "too_many_pixels",
        "empty": "empty",
    }


def test_only_plain_jpegs_within_the_limit_go_to_the_device() -> None:
    assert plan(jpeg(photo("chelsea.png")), max_pixels=LIMIT) is not None
    assert plan(jpeg(photo("camera.png").convert("L")), max_pixels=LIMIT) is not None
    for data in (
        png(photo("chelsea.png")),
        encoded(photo("coffee.png").convert("CMYK"), "JPEG"),
        b"\xff\xd8\xff garbage",
        b"",
    ):
        assert plan(data, max_pixels=LIMIT) is None
    assert plan(jpeg(photo("chelsea.png")), max_pixels=451 * 300 - 1) is None


def test_a_jpeg_the_device_cannot_decode_fails_alone_and_its_batch_mates_stay_on_the_device() -> None:
    good = jpeg(photo("coins.png"))
    truncated = jpeg(photo("coffee.png"))[:5000]  # its header is fine: only decoding finds the damage
    planned = [plan(data, max_pixels=LIMIT) for data in (good, truncated, good)]
    assert all(p is not None for p in planned)
    decoded = decode_plans([p for p in planned if p is not None], CPU)
    assert [d is None for d in decoded] == [False, True, False]
    first, third = decoded[0], decoded[2]
    assert first is not None
    assert third is not None
    assert torch.equal(first.pixels, third.pixels)


def test_the_reduction_factor_is_the_one_pillows_draft_picks() -> None:
    for size in [(511, 600), (512, 512), (600, 1023), (1024, 1024), (2047, 3000), (2048, 2048), (4032, 3024)]:
        with Image.open(io.BytesIO(jpeg(Image.new("RGB", size, (10, 20, 30))))) as header:
            header.draft(None, (imaging.DECODE_MIN_SIDE, imaging.DECODE_MIN_SIDE))
            scale = draft_scale(*size, imaging.DECODE_MIN_SIDE)
            assert header.size == (-(-size[0] // scale), -(-size[1] // scale)), size
    assert [draft_scale(s, s, 256) for s in (511, 512, 1023, 1024, 2047, 2048, 9000)] == [1, 2, 2, 4, 4, 8, 8]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_turn_as_pillow_turns_them(orientation: int) -> None:
    stored = (np.arange(5 * 7 * 3) % 251).astype(np.uint8).reshape(5, 7, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    with Image.open(io.BytesIO(encoded(Image.fromarray(stored), "PNG", exif=exif.tobytes()))) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened))
    turned = orient(torch.from_numpy(stored).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    assert turned.shape == expected.shape
    assert np.array_equal(turned, expected)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_large_turned_photo_is_reduced_on_its_stored_grid_then_turned(orientation: int) -> None:
    # 2101 × 3005 (not multiples of 8) at 1/8: reducing after turning would put the block grid on the wrong
    # corner, and the pictures would differ by several grey levels on average (measured: 2.3-4.9).
    upright = enlarged("coffee.png", (2101, 3005))
    data = rotated_jpeg(upright, orientation)
    expected = cpu_path(data, max_pixels=10_000_000)
    assert isinstance(expected, Image.Image)
    result = decode_batch([data], device=CPU, max_pixels=10_000_000)[0]
    assert isinstance(result, Decoded)
    assert result.picture.size == expected.size == (263, 376)
    difference = np.abs(pixels_of(result.picture) - pixels_of(expected))
    assert difference.mean() < 0.5
    assert difference.max() <= 8


def test_the_model_input_is_the_cpu_paths_to_rounding() -> None:
    data = jpeg(enlarged("chelsea.png", (2200, 1460)))  # reduced at 1/4
    result = decode_batch([data], device=CPU, max_pixels=LIMIT)[0]
    assert isinstance(result, Decoded)
    assert (result.pixels.shape, result.pixels.dtype, result.pixels.device) == ((3, 224, 224), torch.uint8, CPU)
    expected = cpu_path(data)
    assert isinstance(expected, Image.Image)
    difference = (result.pixels.int() - preprocess(expected).int()).abs().float()
    assert difference.mean() < 1.0
    assert difference.max() <= 16


def test_fingerprints_agree_within_the_documented_tolerance() -> None:
    # Seven of the 49 sources, at full size and at 1, 3 and 12 MP (1/1 to 1/8), baseline and progressive: 56 JPEGs.
    # TOLERANCE: the two paths' descriptors have at least this similarity (python -m tooling.eval.decode_agreement
    # measures the whole set). On these 56 (CPU): whole and mirror ≥ 0.99998, every region ≥ 0.99991.
    sources = [source for n, source in enumerate(distinct_images()) if n % 8 == 0]
    rows = [compare(name, data, CPU) for name, data in jpegs(sources)]
    assert len(rows) == 56
    assert {r.scale for r in rows} == {1, 2, 4, 8}
    assert 0.0 < device_decode.TOLERANCE < 1.0
    assert min(r.whole for r in rows) >= device_decode.TOLERANCE
    assert min(r.mirror for r in rows) >= device_decode.TOLERANCE
    assert min(r.regions for r in rows) >= 1.0 - 2 * (1.0 - device_decode.TOLERANCE)  # twice as far: a region
    assert sum(r.whole >= 0.9999 for r in rows) >= 0.9 * len(rows)
    assert all(r.lowest == min(r.whole, r.mirror, r.regions) for r in rows)
    assert all(r.guard_same for r in rows)
    # the same picture: the same descriptors (up to float rounding of the cosine)
    assert all(r.lowest >= 1.0 - 1e-6 and r.colour == 0 for r in rows if r.scale == 1)


def test_decoding_the_same_picture_on_its_own_or_in_a_batch_gives_the_same_fingerprint() -> None:
    data = jpeg(enlarged("astronaut.png", (2300, 2300)))
    alone = decode_batch([data], device=CPU, max_pixels=10_000_000)[0]
    batched = decode_batch([jpeg(photo("coins.png")), data], device=CPU, max_pixels=10_000_000)[1]
    assert isinstance(alone, Decoded)
    assert isinstance(batched, Decoded)
    assert same_fingerprint(fingerprint(alone.picture), fingerprint(batched.picture))
    assert torch.equal(alone.pixels, batched.pixels)


# The worker pipeline with DEDUP_DECODE=device, on real components ------------------------------------------------


def copies() -> list[tuple[str, bytes]]:
    """Originals and their copies, in upload order: small and camera-sized JPEGs, a PNG copy (Pillow in the
    device pipeline) and an unrelated photo."""
    cat, street = photo("chelsea.png"), enlarged("coffee.png", (4096, 2731))  # the street at 1/8
    return [
        ("cat.jpg", jpeg(cat)),
        ("street.jpg", jpeg(street)),
        ("cat-small.jpg", jpeg(resized(cat))),
        ("cat-q50.jpg", jpeg(cat, 50)),
        ("cat.png", png(cat)),
        ("street-small.jpg", jpeg(resized(street, 0.3))),
        ("street-q60.jpg", jpeg(street, 60)),
        ("rocket.jpg", jpeg(photo("rocket.jpg"))),
    ]


Decisions = list[tuple[str, Status, str | None, Kind | None]]


def decisions(stack: LocalStack, embedder: Embedder, uri: str, prefix: str, decode: str) -> tuple[Decisions, bool]:
    """Each copy's decision by a pipeline of its own (its own index) with ``DEDUP_DECODE=decode`` — the two
    originals first, then the rest at once, as task threads would — and whether it had a decode stage."""
    index = Index.connect(uri, collection="image_dedup")
    rig = build(stack, index, embedder, decode=decode)
    try:
        events = [rig.upload(f"{prefix}{key}", data) for key, data in copies()]
        outcomes = [rig.pipeline.process(event) for event in events[:2]]
        with ThreadPoolExecutor(len(events)) as pool:
            outcomes += pool.map(rig.pipeline.process, events[2:])
    finally:
        rig.pipeline.close()
        index.close()
    keys = [event.key.removeprefix(prefix) for event in events]
    originals = [o.original.removeprefix(f"{BUCKET}/{prefix}") if o.original else None for o in outcomes]
    found = [(k, o.status, original, o.kind) for k, o, original in zip(keys, outcomes, originals, strict=True)]
    return found, rig.pipeline.decode_stage is not None


@pytest.mark.integration
def test_the_pipeline_decides_the_same_with_device_decoding_as_with_pillow(
    stack: LocalStack, embedder: Embedder, prefix: str, tmp_path: Path
) -> None:
    decoded_before = REGISTRY.get_sample_value("dedup_batch_size_sum", {"stage": "decode"}) or 0.0
    with_pillow, staged = decisions(stack, embedder, str(tmp_path / "pillow.db"), f"{prefix}pillow/", "pillow")
    assert not staged
    with_device, staged = decisions(stack, embedder, str(tmp_path / "device.db"), f"{prefix}device/", "device")
    assert staged

    assert with_device == with_pillow
    assert with_device == [
        ("cat.jpg", Status.UNIQUE, None, None),
        ("street.jpg", Status.UNIQUE, None, None),
        ("cat-small.jpg", Status.DUPLICATE, "cat.jpg", Kind.PERCEPTUAL),
        ("cat-q50.jpg", Status.DUPLICATE, "cat.jpg", Kind.PERCEPTUAL),
        ("cat.png", Status.DUPLICATE, "cat.jpg", Kind.PERCEPTUAL),
        ("street-small.jpg", Status.DUPLICATE, "street.jpg", Kind.PERCEPTUAL),
        ("street-q60.jpg", Status.DUPLICATE, "street.jpg", Kind.PERCEPTUAL),
        ("rocket.jpg", Status.UNIQUE, None, None),
    ]
    # The seven JPEGs went through the decode stage, in however many batches; the PNG did not.
    assert REGISTRY.get_sample_value("dedup_batch_size_sum", {"stage": "decode"}) == decoded_before + 7
