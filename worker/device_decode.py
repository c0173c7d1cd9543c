"""Batched JPEG decoding on the model's device (nvjpeg on CUDA, libjpeg-turbo on the CPU), with Pillow for the rest.

    >>> decoded = decode_batch([jpeg_bytes, png_bytes, b"junk"], device=torch.device("cuda"), max_pixels=100_000_000)
    >>> decoded[0].pixels.shape, decoded[0].pixels.device, decoded[0].picture.mode
    (torch.Size([3, 224, 224]), device(type='cuda', index=0), 'RGB')
    >>> type(decoded[2]).__name__, decoded[2].reason
    ('PermanentError', 'undecodable')

Each item gives a :class:`Decoded` — the model input (uint8 3×224×224, already on ``device``, so
:meth:`worker.embedding.Embedder.embed` does not copy it again) and the fingerprint's picture (a small RGB
:class:`PIL.Image.Image` on the host) — or the exception for that item alone.

What goes to the device: a baseline or progressive JPEG in RGB or greyscale whose header (read by Pillow, no
pixel decoded) is within ``max_pixels``. The batch is one ``torchvision.io.decode_jpeg`` call; when it fails, its
images are decoded one by one, so a bad file never costs its batch-mates. Everything else — other formats, CMYK
and YCCK JPEGs, MPO, a JPEG the device decoder refuses, an empty or oversized object — goes through
:func:`worker.imaging.decode`, the CPU path, which therefore gives exactly its reasons (``empty``, ``undecodable``,
``too_many_pixels``, ``memory``) and its pictures.

**One fingerprint for both paths.** The CPU path decodes a large JPEG at 1/2, 1/4 or 1/8 scale (Pillow's
``draft``, libjpeg's DCT scaling) and fingerprints that picture. Here the full picture is decoded, then reduced
by the very factor ``draft`` would pick (:func:`draft_scale`), on the grid libjpeg uses (8×8 blocks from the top
left of the stored picture, the edge replicated into the last partial block as the encoder does), by taking cell
means (:func:`reduce_like_draft`): libjpeg's reduced IDCTs compute the averages of the full IDCT's outputs over
those cells (``jidctred.c``), so this reproduces them up to the full decode's rounding and clamping. The EXIF
orientation is applied after that, as :func:`worker.imaging.decode` does. The small picture goes to the host and
into the same :func:`worker.fingerprint.fingerprint`; the model input is resized (short side 232, bilinear,
antialiased) and centre-cropped (224) from it on the device, so the model sees what the CPU path's
:func:`worker.embedding.preprocess` gives it, to rounding.

**Tolerance.** At full size (a short side under 512 px) both paths decode with libjpeg-turbo and the pictures
are bit-identical. Reduced, 85-95 % of the grey levels agree and the rest are off by one (a few near black and
white by up to 6: clamping). The perceptual descriptors keep coefficient values, so such differences move them
by almost nothing. Measured with ``python -m tooling.eval.decode_agreement`` (49 sources × 4 sizes from 0.04 to
12 MP × baseline and progressive, 392 JPEGs, the device path on the CPU): every whole-picture, mirror and region
descriptor at cosine ≥ 0.9998 to the CPU path's (:data:`TOLERANCE` holds the paths to 0.999); no guard verdict
differs. (With the pHash bits of earlier versions, 6 whole-picture hashes were 2 bits apart and 2 region hashes
4 bits.) tests/test_device_decode.py holds the paths to
that. nvjpeg's decode on CUDA (its IDCT and chroma upsampling are not libjpeg-turbo's) has not been compared:
no GPU was available here.

torchvision 0.29 deprecates its image decoders in favour of TorchCodec (``decode_jpeg`` warns with a
DeprecationWarning); when a torchvision release drops them, this module has to move to TorchCodec's.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as nnf
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as tvf

from worker import imaging
from worker.embedding import CROP, RESIZE, preprocess
from worker.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

#: The smallest cosine measured between the two paths' descriptors of one JPEG is 0.9998;
#: tests/test_device_decode.py holds the paths to this.
TOLERANCE = 0.999

_BLOCK = 8  # libjpeg scales by whole 8×8 DCT blocks
_DEVICE_MODES = {"RGB", "L"}  # CMYK and YCCK JPEGs stay with Pillow (Adobe inversion: not checked on nvjpeg)
#: EXIF orientation → (mirror left-right first, counter-clockwise quarter turns), as Pillow's exif_transpose.
_ORIENTATIONS = {
    1: (False, 0),
    2: (True, 0),
    3: (False, 2),
    4: (True, 2),
    5: (True, 1),
    6: (False, -1),
    7: (True, -1),
    8: (False, 1),
}


@dataclass(frozen=True, slots=True)
class Decoded:
    """One picture, ready for both near-duplicate stages."""

    pixels: torch.Tensor  # the model input: uint8 3×224×224 on the decode device
    picture: Image.Image  # the fingerprint's picture: RGB, as the CPU path's reduced-size decode


@dataclass(frozen=True, slots=True)
class Plan:
    """A JPEG the device may decode, read from its header: its bytes, the reduction ``draft`` would use and its
    EXIF orientation."""

    data: bytes
    scale: int
    orientation: int


def draft_scale(width: int, height: int, min_side: int) -> int:
    """The DCT scale denominator Pillow's ``JpegImageFile.draft(mode, (min_side, min_side))`` picks: the largest
    of 8, 4, 2, 1 that keeps both sides at least ``min_side``."""
    if min_side <= 0:
        return 1
    fits = min(width // min_side, height // min_side)
    return next((s for s in (8, 4, 2) if fits >= s), 1)


def plan(data: bytes, *, max_pixels: int, min_side: int = imaging.DECODE_MIN_SIDE) -> Plan | None:
    """What the device needs to know of ``data``, from its header alone (no pixel is decoded). None: leave it to
    the CPU path, :func:`worker.imaging.decode`, which gives the reason when there is one to give (not a JPEG,
    over the pixel limit, a decompression bomb, broken EXIF) or decodes what the device does not (CMYK, MPO)."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as header:
            width, height = header.size
            if header.format != "JPEG" or header.mode not in _DEVICE_MODES or width * height > max_pixels:
                return None
            orientation = int(header.getexif().get(0x0112, 1))
    except Exception:
        return None
    return Plan(data, draft_scale(width, height, min_side), orientation if orientation in _ORIENTATIONS else 1)


def decode_plans(plans: Sequence[Plan], device: torch.device) -> list[Decoded | None]:
    """Decode the planned JPEGs on ``device``: one batched ``decode_jpeg`` call, or one call each when the batch
    fails. None: the device could not decode this one (decode it with :func:`worker.imaging.decode`)."""
    decoded = _decode_on_device([p.data for p in plans], device)
    results: list[Decoded | None] = []
    for full, planned in zip(decoded, plans, strict=True):
        try:
            results.append(None if full is None else _finish(full, planned))
        except Exception as exc:  # out of device memory, say: the CPU path may still manage
            log.warning("finishing a device-decoded JPEG failed (%s); trying Pillow", exc)
            results.append(None)
    return results


def decode_batch(
    items: Sequence[bytes], *, device: torch.device, max_pixels: int, min_side: int = imaging.DECODE_MIN_SIDE
) -> list[Decoded | PermanentError | TransientError]:
    """:func:`plan`, :func:`decode_plans` and the CPU path together: each result is a :class:`Decoded` or the
    error :func:`worker.imaging.decode` gives that item. (The pipeline runs the CPU path in its task threads
    instead, so that other formats decode in parallel.)"""
    plans = [plan(data, max_pixels=max_pixels, min_side=min_side) for data in items]
    on_device = [(i, p) for i, p in enumerate(plans) if p is not None]
    done = dict(zip((i for i, _ in on_device), decode_plans([p for _, p in on_device], device), strict=True))
    results: list[Decoded | PermanentError | TransientError] = []
    for i, data in enumerate(items):
        result = done.get(i)
        results.append(result if result is not None else _on_cpu(data, device, max_pixels, min_side))
    return results


def reduce_like_draft(full: torch.Tensor, scale: int) -> torch.Tensor:
    """A decoded uint8 C×H×W picture reduced as libjpeg's DCT scaling at ``1/scale`` would: means of
    ``scale``×``scale`` cells of the 8×8 block grid, the last partial block filled by replicating the edge (as the
    encoder does), ``ceil(H/scale)``×``ceil(W/scale)`` like ``draft``. The sums are exact in float32 and rounded
    half up, so every device gives the same result from the same decoded pixels."""
    if scale == 1:
        return full
    _, height, width = full.shape
    pad_h, pad_w = -height % _BLOCK, -width % _BLOCK
    padded = full[None].float()
    if pad_h or pad_w:
        padded = nnf.pad(padded, (0, pad_w, 0, pad_h), mode="replicate")
    means = nnf.avg_pool2d(padded, scale)[0]
    out_h, out_w = -(-height // scale), -(-width // scale)
    return torch.floor(means[:, :out_h, :out_w] + 0.5).clamp_(0, 255).to(torch.uint8)


def orient(picture: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a C×H×W picture as :func:`PIL.ImageOps.exif_transpose` does: mirror
    left-right for 2, 4, 5 and 7, then turn counter-clockwise by that many quarter turns."""
    mirror, turns = _ORIENTATIONS[orientation]
    if mirror:
        picture = picture.flip(-1)
    return torch.rot90(picture, turns, dims=(-2, -1)) if turns else picture


def model_input(picture: torch.Tensor) -> torch.Tensor:
    """A uint8 C×H×W picture → the model's uint8 3×224×224 input on its device, as
    :func:`worker.embedding.preprocess` makes it from a PIL picture (resize the short side to 232, bilinear,
    antialiased; centre crop)."""
    resized = tvf.resize(picture, [RESIZE], interpolation=tvf.InterpolationMode.BILINEAR, antialias=True)
    cropped: torch.Tensor = tvf.center_crop(resized, [CROP, CROP])
    return cropped.contiguous()


def _decode_on_device(items: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """One batched decode; if the batch fails, one by one. None: this item failed."""
    if not items:
        return []
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in items]
    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
    except Exception as exc:
        if len(items) > 1:
            log.info("device JPEG decode of a batch of %d failed (%s); decoding one by one", len(items), exc)
    singles: list[torch.Tensor | None] = []
    for one in encoded:
        try:
            singles.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
        except Exception as exc:
            log.debug("device JPEG decode failed (%s); trying Pillow", exc)
            singles.append(None)
    return singles


def _finish(full: torch.Tensor, planned: Plan) -> Decoded:
    """Both stages' inputs from one decoded picture."""
    small = orient(reduce_like_draft(full, planned.scale), planned.orientation)
    picture = Image.fromarray(np.ascontiguousarray(small.permute(1, 2, 0).cpu().numpy()), mode="RGB")
    return Decoded(model_input(small), picture)


def _on_cpu(
    data: bytes, device: torch.device, max_pixels: int, min_side: int
) -> Decoded | PermanentError | TransientError:
    """The CPU path for one item, its model input moved to ``device`` so that a batch stacks."""
    try:
        picture = imaging.decode(data, max_pixels=max_pixels, min_side=min_side)
    except (PermanentError, TransientError) as exc:
        return exc
    return Decoded(preprocess(picture).to(device), picture)
