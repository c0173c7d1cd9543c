"""What ``make scale`` puts in the index and asks of it, fingerprinted once by the worker's own code and cached.

* **anchors** — the test fold's pictures, stored as originals: each upload's true original;
* **fillers** — the rest of the index: pictures derived from the tuning fold (another set of collections, so no
  filler is a copy of an anchor), each a random crop of 30–80 % of its source's area at a random place, turned
  a quarter turn or not, mirrored or not, sometimes grey or brightened or darkened, at a random size. A source
  gives ~1,000 fillers at 1M originals: real pictures' descriptors, never random vectors;
* **uploads** — the test fold's pictures under the moderate edits of :mod:`tooling.eval.transforms` the
  perceptual stage claims (:data:`EDITS`), a fixed sample of (picture, edit) pairs, each to be found as its
  anchor's duplicate.

Anchors and uploads are cached in one file each; fillers in ``DIR/fillers-<seed>/shard-NNNN.npz`` (:data:`SHARD`
each, made by two processes) and read back shard by shard, so that 1M fillers (16 KB each with their views'
details) never sit in memory at once.

    >>> anchors = load(cache / "anchors.npz", lambda: anchor_prints(corpus_root))
    >>> for shard in filler_shards(cache, corpus_root, count=100_000):  # builds what is missing first
    ...     index.store(shard.signals(first_time=1))
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageEnhance, ImageOps

from tooling.eval import corpus
from tooling.eval.dataset import decode
from tooling.eval.transforms import TRANSFORMS, Transform
from worker.decision import Look, Signals
from worker.fingerprint import Fingerprint, fingerprint

#: Fillers per cache file.
SHARD = 10_000
#: The side a filler's source is decoded to once (each process keeps its sources in memory).
SOURCE_SIDE = 512
#: The edits an upload is made with: every moderate one that changes the bytes, less those the perceptual stage does
#: not claim (docs/quality.md: rotations, and a crop of two sides, which it finds in no fold).
EDITS: tuple[Transform, ...] = tuple(
    t for t in TRANSFORMS if t.moderate and t.name not in ("copy", "rotate") and t.key != "side crop 10% top+left"
)


@dataclass(frozen=True)
class Prints:
    """Fingerprints as arrays, row ``i`` one picture: ``ids``, ``sha256`` (hex), ``dct`` (n × 64), ``variants``
    (n × 15 × 64), ``details`` (n × 16 × 1,024 int8), ``scalars`` (information, split, texture), ``colour`` (n ×
    51 bytes; a shorter colour is padded, its length in ``colour_len``) and ``source`` (the anchor an upload
    derives from; -1 for the others)."""

    ids: npt.NDArray[np.str_]
    sha256: npt.NDArray[np.str_]
    dct: npt.NDArray[np.float32]
    variants: npt.NDArray[np.float32]
    details: npt.NDArray[np.int8]
    scalars: npt.NDArray[np.float32]
    colour: npt.NDArray[np.uint8]
    colour_len: npt.NDArray[np.int16]
    source: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.ids)

    def signals(self, first_time: int, embedding: int = 0) -> list[Signals]:
        """Each picture as the worker's :class:`~worker.decision.Signals`, event times from ``first_time`` on; with
        ``embedding`` (a dimension), each gets a unit vector of noise, which is what random weights give."""
        noise = np.random.default_rng(first_time)
        return [
            Signals(
                str(self.ids[i]),
                first_time + i,
                str(self.sha256[i]),
                self.dct[i],
                embedding=_unit(noise.standard_normal(embedding, dtype=np.float32)) if embedding else None,
                look=Look(
                    variants=self.variants[i],
                    information=float(self.scalars[i, 0]),
                    split=float(self.scalars[i, 1]),
                    texture=float(self.scalars[i, 2]),
                    colour=self.colour[i, : self.colour_len[i]].tobytes(),
                    details=self.details[i],
                ),
            )
            for i in range(len(self))
        ]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, **{name: getattr(self, name) for name in self.__dataclass_fields__})
        partial.replace(path)

    @classmethod
    def read(cls, path: Path) -> Prints:
        with np.load(path) as arrays:
            return cls(**{name: arrays[name] for name in cls.__dataclass_fields__})

    @classmethod
    def of(cls, rows: Sequence[tuple[str, str, Fingerprint, int]]) -> Prints:
        """From ``(id, sha256, fingerprint, source)`` rows."""
        colours = [fp.look.colour for _, _, fp, _ in rows]
        width = max((len(c) for c in colours), default=0)
        return cls(
            ids=np.array([r[0] for r in rows], dtype=np.str_),
            sha256=np.array([r[1] for r in rows], dtype=np.str_),
            dct=np.stack([fp.dct for _, _, fp, _ in rows]).astype(np.float32),
            variants=np.stack([fp.look.variants for _, _, fp, _ in rows]).astype(np.float32),
            details=np.stack([fp.look.details for _, _, fp, _ in rows]).astype(np.int8),
            scalars=np.array(
                [(fp.look.information, fp.look.split, fp.look.texture) for _, _, fp, _ in rows], dtype=np.float32
            ),
            colour=np.array([list(c.ljust(width, b"\0")) for c in colours], dtype=np.uint8).reshape(len(rows), width),
            colour_len=np.array([len(c) for c in colours], dtype=np.int16),
            source=np.array([r[3] for r in rows], dtype=np.int32),
        )


def load(path: Path, build: Callable[[], Prints]) -> Prints:
    """The prints cached at ``path``, built (and cached) when missing."""
    if not path.exists():
        build().save(path)
    return Prints.read(path)


# Anchors and uploads ----------------------------------------------------------------------------------------------


def anchor_prints(root: Path) -> Prints:
    """The test fold's pictures as originals (``anchors/<collection>/<file>``)."""
    rows = []
    for n, picture in enumerate(corpus.load(root, "test")):
        data = picture.path.read_bytes()
        rows.append((f"anchors/{picture.name}", _sha256(data), fingerprint(decode(data)), n))
    return Prints.of(rows)


def upload_prints(root: Path, count: int, seed: int = 7) -> Prints:
    """``count`` uploads: (test picture, moderate edit) pairs drawn at random, each edited and fingerprinted as
    uploaded (``uploads/<n>/<edit>/<collection>/<file>``; ``source``: its anchor's row)."""
    pictures = corpus.load(root, "test")
    rng = random.Random(seed)  # noqa: S311 (a fixed draw, not a secret)
    pairs = sorted({(rng.randrange(len(pictures)), rng.randrange(len(EDITS))) for _ in range(count * 2)})
    rng.shuffle(pairs)
    rows = []
    for n, (source, edit) in enumerate(pairs[:count]):
        picture, transform = pictures[source], EDITS[edit]
        data = picture.path.read_bytes()
        copy = transform.apply(decode(data), data)
        name = f"uploads/{n}/{edit_name(transform)}/{picture.name}"
        rows.append((name, _sha256(copy), fingerprint(decode(copy)), source))
    return Prints.of(rows)


def edits_key() -> str:
    """A short digest of :data:`EDITS`: cached uploads made with other edits are not reused."""
    return hashlib.sha256("\n".join(t.key for t in EDITS).encode()).hexdigest()[:8]


def edit_name(transform: Transform) -> str:
    """A transform's key as one segment of an upload's id (``crop-5%``, ``downscale-1÷2``)."""
    return transform.key.replace(" ", "-").replace("/", "÷")


# Fillers ----------------------------------------------------------------------------------------------------------


def filler_folder(cache_dir: Path, seed: int = 1) -> Path:
    return cache_dir / f"fillers-{seed}"


def filler_shards(cache_dir: Path, root: Path, count: int, *, seed: int = 1, processes: int = 2) -> Iterator[Prints]:
    """The first ``count`` fillers, to be read shard by shard; missing shards are made now (``processes`` at a
    time), before anything is timed."""
    folder = filler_folder(cache_dir, seed)
    shards = [folder / f"shard-{n:04d}.npz" for n in range(-(-count // SHARD))]
    missing = [n for n, path in enumerate(shards) if not path.exists()]
    if missing:
        with ProcessPoolExecutor(processes) as pool:
            for n, prints in zip(missing, pool.map(_filler_shard, [(root, seed, n) for n in missing]), strict=True):
                prints.save(shards[n])
    return _read(shards, count)


def _read(shards: list[Path], count: int) -> Iterator[Prints]:
    left = count
    for path in shards:
        prints = Prints.read(path)
        if left < len(prints):
            prints = _head(prints, left)
        left -= len(prints)
        yield prints


def filler(source: Image.Image, rng: random.Random) -> Image.Image:
    """One picture derived from ``source``: a crop of 30–80 % of its area at a random place, perhaps turned a
    quarter, mirrored, made grey, brighter or darker, at a random size (long side 160–512)."""
    width, height = source.size
    area = rng.uniform(0.3, 0.8)
    aspect = rng.uniform(0.6, 1.6)
    w = max(8, min(width, round(width * (area * aspect) ** 0.5)))
    h = max(8, min(height, round(height * (area / aspect) ** 0.5)))
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    picture = source.crop((left, top, left + w, top + h))
    if rng.random() < 0.5:
        picture = ImageOps.mirror(picture)
    if rng.random() < 0.3:
        picture = picture.transpose(rng.choice((Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)))
    if rng.random() < 0.1:
        picture = ImageOps.grayscale(picture).convert("RGB")
    elif rng.random() < 0.2:
        picture = ImageEnhance.Brightness(picture).enhance(rng.uniform(0.7, 1.3))
    side = rng.randint(160, SOURCE_SIDE)
    scale = side / max(picture.size)
    return picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))))


def _filler_shard(job: tuple[Path, int, int]) -> Prints:
    root, seed, shard = job
    sources = _sources(root)
    rows = []
    for n in range(shard * SHARD, (shard + 1) * SHARD):
        rng = random.Random(seed * 1_000_003 + n)  # noqa: S311 (each filler's own fixed draw, not a secret)
        picture = filler(sources[n % len(sources)], rng)
        digest = hashlib.sha256(f"filler {seed} {n}".encode()).hexdigest()  # one per filler: no exact matches
        rows.append((f"fillers/{n:07d}", digest, fingerprint(picture), -1))
    return Prints.of(rows)


@cache
def _sources(root: Path) -> tuple[Image.Image, ...]:
    """The tuning fold's pictures, decoded once to at most :data:`SOURCE_SIDE` (in each process)."""
    out = []
    for picture in corpus.load(root, "tune", verify=False):
        image = decode(picture.path.read_bytes()).convert("RGB")
        image.thumbnail((SOURCE_SIDE, SOURCE_SIDE))
        out.append(image)
    return tuple(out)


def _unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return v / np.float32(np.linalg.norm(v))


def _head(prints: Prints, n: int) -> Prints:
    return Prints(**{name: getattr(prints, name)[:n] for name in Prints.__dataclass_fields__})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
