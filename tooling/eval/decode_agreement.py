"""``python -m tooling.eval.decode_agreement``: how far the device decode path's fingerprints are from the CPU path's.

A mixed fleet (CPU workers decoding with Pillow, GPU workers with :mod:`worker.device_decode`) must agree on
hashes, or one worker's copy is another's original. This encodes the source photos as JPEGs at several sizes,
baseline and progressive, fingerprints each through both paths and prints how far apart they come out::

    python -m tooling.eval.decode_agreement            # the 49 sources × 4 sizes × 2 encodings, on the CPU
    392 JPEGs (scales: {1: 92, 2: 104, 4: 98, 8: 98})
      whole:      ≥ 0.9999 ×392, ≥ 0.999 ×392, ≥ 0.99 ×392, ≥ 0.98 ×392, ≥ 0.95 ×392 (min 1.0000)
      mirror:     ≥ 0.9999 ×392, ≥ 0.999 ×392, ≥ 0.99 ×392, ≥ 0.98 ×392, ≥ 0.95 ×392 (min 0.9999)
      regions (smallest of 10): ≥ 0.9999 ×386, ≥ 0.999 ×392, ≥ 0.99 ×392, ≥ 0.98 ×392, ≥ 0.95 ×392 (min 0.9998)
      ...

The device path runs on ``--device`` (``cpu`` by default: torchvision's libjpeg-turbo, the same code as on CUDA
except the decoder). Pictures enlarged past their source get a little seeded noise, so that the large ones have
detail down to the pixel as camera pictures do, not just smooth upscaled gradients.
"""

from __future__ import annotations

import io
import itertools
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import typer
from PIL import Image

from tooling.eval.sources import distinct_images
from worker import device_decode, imaging
from worker.decision import Guard, colour_distance, similarity
from worker.fingerprint import Fingerprint, fingerprint

#: Sizes the sources are encoded at, in megapixels (None: as they are, 0.04-0.45 MP).
MEGAPIXELS: tuple[float | None, ...] = (None, 1.0, 3.0, 12.0)
NOISE = 2.0  # grey levels of seeded Gaussian noise added to enlarged pictures
LIMIT = 100_000_000


@dataclass(frozen=True, slots=True)
class Agreement:
    """How one JPEG's two fingerprints differ."""

    name: str
    scale: int
    whole: float  # similarity of the whole-picture descriptors
    mirror: float
    regions: float  # the smallest similarity among the region descriptors
    information: float  # absolute differences of the guard values
    split: float
    texture: float
    colour: float  # colour_distance of the two layouts
    guard_same: bool  # both paths give the same perceptual and semantic guard verdicts

    @property
    def lowest(self) -> float:
        return min(self.whole, self.mirror, self.regions)


def jpegs(
    sources: Iterable[tuple[str, Image.Image]] | None = None, megapixels: Sequence[float | None] = MEGAPIXELS
) -> Iterator[tuple[str, bytes]]:
    """``(name, JPEG bytes)`` of every source (default: :func:`tooling.eval.sources.distinct_images`) at every
    size, baseline then progressive (quality 90, 4:2:0)."""
    for n, (name, source) in enumerate(distinct_images() if sources is None else sources):
        for mp in megapixels:
            picture = _sized(source.convert("RGB"), mp, seed=n)
            for progressive in (False, True):
                out = io.BytesIO()
                picture.save(out, "JPEG", quality=90, progressive=progressive)
                label = f"{name}@{picture.width}x{picture.height}{'-progressive' if progressive else ''}"
                yield label, out.getvalue()


def compare(name: str, data: bytes, device: torch.device) -> Agreement:
    """Fingerprint ``data`` through both paths and compare."""
    cpu_picture = imaging.decode(data, max_pixels=LIMIT, min_side=imaging.DECODE_MIN_SIDE)
    result = device_decode.decode_batch([data], device=device, max_pixels=LIMIT)[0]
    if isinstance(result, Exception):
        raise result
    with Image.open(io.BytesIO(data)) as header:
        scale = device_decode.draft_scale(*header.size, imaging.DECODE_MIN_SIDE)
    return _agreement(name, scale, fingerprint(cpu_picture), fingerprint(result.picture))


def _agreement(name: str, scale: int, a: Fingerprint, b: Fingerprint) -> Agreement:
    guard = Guard()
    return Agreement(
        name,
        scale,
        whole=similarity(a.dct, b.dct),
        mirror=similarity(a.mirror, b.mirror),
        regions=min(similarity(x, y) for x, y in zip(a.regions, b.regions, strict=True)),
        information=abs(a.look.information - b.look.information),
        split=abs(a.look.split - b.look.split),
        texture=abs(a.look.texture - b.look.texture),
        colour=colour_distance(a.look.colour, b.look.colour),
        guard_same=(guard.perceptual_ok(a.look), guard.semantic_ok(a.look))
        == (guard.perceptual_ok(b.look), guard.semantic_ok(b.look)),
    )


def summary(rows: Sequence[Agreement]) -> str:
    """A few lines: the distance distributions and the largest guard-value differences."""

    def histogram(values: list[float]) -> str:
        steps = (0.9999, 0.999, 0.99, 0.98, 0.95)
        counts = [f"≥ {s} ×{sum(v >= s for v in values)}" for s in steps]
        return ", ".join(counts) + f" (min {min(values):.4f})"

    lines = [
        f"{len(rows)} JPEGs (scales: {dict(sorted(Counter(r.scale for r in rows).items()))})",
        f"  whole:      {histogram([r.whole for r in rows])}",
        f"  mirror:     {histogram([r.mirror for r in rows])}",
        f"  regions (smallest of 10): {histogram([r.regions for r in rows])}",
        f"  information: max Δ {max(r.information for r in rows):.3f} grey levels; "
        f"split: max Δ {max(r.split for r in rows):.4f}; texture: max Δ {max(r.texture for r in rows):.4f}; "
        f"colour: max distance {max(r.colour for r in rows):.4f}",
        f"  guard verdicts that differ: {sum(not r.guard_same for r in rows)}",
    ]
    for scale in sorted({r.scale for r in rows}):
        at = [r.whole for r in rows if r.scale == scale]
        lines.append(f"  at 1/{scale}: whole {histogram(at)}")
    worst = sorted(rows, key=lambda r: (r.lowest, r.whole))[:5]
    lines.append("  farthest: " + "; ".join(f"{r.name} {r.whole:.4f}/{r.mirror:.4f}/{r.regions:.4f}" for r in worst))
    return "\n".join(lines)


def _sized(picture: Image.Image, megapixels: float | None, *, seed: int) -> Image.Image:
    if megapixels is None:
        return picture
    factor = math.sqrt(megapixels * 1e6 / (picture.width * picture.height))
    size = (round(picture.width * factor), round(picture.height * factor))
    resized = picture.resize(size, Image.Resampling.LANCZOS)
    if factor <= 1:
        return resized
    noise = np.random.default_rng(seed).normal(0.0, NOISE, (size[1], size[0], 1))
    return Image.fromarray(np.clip(np.asarray(resized, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


app = typer.Typer(add_completion=False)


@app.command()
def main(
    device: Annotated[str, typer.Option(help="Where the device path decodes: cpu, cuda, cuda:N.")] = "cpu",
    sources: Annotated[int | None, typer.Option(help="Only the first N of the 49 sources.")] = None,
) -> None:
    """Print how far apart the two decode paths' fingerprints are."""
    started = time.monotonic()
    chosen = itertools.islice(distinct_images(), sources)
    rows = [compare(name, data, torch.device(device)) for name, data in jpegs(chosen)]
    typer.echo(summary(rows))
    typer.echo(f"  ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    app()
