"""Helpers shared by the tests."""

from __future__ import annotations

import io
import itertools
import struct
import time
import zlib
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from worker.config import EMBEDDING_DIM
from worker.decision import Look, Vector
from worker.hashing import bits_descriptor
from worker.index import Index

BUCKET = "photos"

_SERVER_INDEXES: dict[tuple[str, str, int | None, int], Index] = {}


def server_index(uri: str, collection: str, *, dim: int | None = EMBEDDING_DIM, search_limit: int = 10) -> Index:
    """The collections of ``collection`` on a Milvus server that tests share, empty. Each is made once a server
    (the 2.3 server takes ~4 s a collection), and every row is deleted before each use: a test starts from an empty
    index, as on a fresh Lite file. The connection stays open until :func:`forget_server`; tests do not close it."""
    key = (uri, collection, dim, search_limit)
    index = _SERVER_INDEXES.get(key)
    if index is None:
        index = _SERVER_INDEXES[key] = Index.connect(uri, collection=collection, dim=dim, search_limit=search_limit)
    for name in (index.collection, *index.companions):
        if index.milvus.has(name):
            index.milvus.call(index.milvus.client.delete, name, filter='id != ""')
    return index


def forget_server(uri: str) -> None:
    """Close the connections :func:`server_index` keeps to the server at ``uri`` (it is about to stop)."""
    for key in [k for k in _SERVER_INDEXES if k[0] == uri]:
        _SERVER_INDEXES.pop(key).close()


_clock = itertools.count(int(time.time() * 1000))

#: How far a similarity may differ between the two orders of arrival: they sum the same float32 products in
#: another order, which another CPU's vector units round differently (6e-8 seen; one unit in the last place of a
#: float32 near 1 is 6e-8, and this allows 16).
ORDER_ROUNDING = 1e-6


def next_time_ms() -> int:
    """Strictly increasing event times across the session."""
    return next(_clock)


def bits(h: int) -> Vector:
    """A 64-bit hash as a perceptual descriptor: two of them ``k`` bits apart have similarity ``1 − k/32``."""
    return bits_descriptor(h)


def bits_apart(k: int) -> float:
    """The similarity of two :func:`bits` descriptors ``k`` bits apart (exact in float32)."""
    return 1.0 - k / 32


def bit_views(hashes: Iterable[int]) -> Vector:
    """A look's variants (one descriptor row per hash, in order: mirror, regions, brightened)."""
    rows = [bits(h) for h in hashes]
    return np.stack(rows) if rows else np.zeros((0, 64), dtype=np.float32)


def bits_look(hashes: Iterable[int], *, information: float, split: float, texture: float, colour: bytes) -> Look:
    """A :class:`Look` whose variants are the descriptors of these hashes."""
    return Look(bit_views(hashes), information, split, texture, colour)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def faint_wallpaper(seed: int) -> bytes:
    """A dark wallpaper as a PNG: two wide soft glows on a gradient, and blotches of a grey level or so that differ
    with ``seed`` (its details are about one grey level loud; a WebP re-encode moves them a third of one)."""
    y, x = np.mgrid[0:384, 0:512]
    glow = 90 * np.exp(-(((x - 320) / 260) ** 2 + ((y - 150) / 200) ** 2))
    glow += 50 * np.exp(-(((x - 100) / 200) ** 2 + ((y - 300) / 200) ** 2))
    blotches = np.random.default_rng(seed).normal(0, 0.5, (24, 32)).repeat(16, 0).repeat(16, 1)
    grey = np.clip(20 + 30 * y / 384 + glow + blotches, 0, 255).astype(np.uint8)
    return encoded(Image.fromarray(grey).filter(ImageFilter.GaussianBlur(6)).convert("RGB"), "PNG")


def light_patchwork(seed: int, low: float = 195, high: float = 230, grain_levels: float = 6) -> Image.Image:
    """A light picture: 8 × 8 patches of grey levels ``low``–``high`` (195–230) with a grain of ±``grain_levels``
    (6), slightly warm. Brightened by 20 % most of it clips, and brightened by 25 %
    (:data:`worker.fingerprint.BRIGHTER`) more of it."""
    rng = np.random.default_rng(seed)
    patches = rng.uniform(low, high, (8, 8)).repeat(64, 0).repeat(64, 1)
    grain = rng.normal(0, grain_levels, (128, 128)).repeat(4, 0).repeat(4, 1)
    grey = np.clip(patches + grain, 0, 255)
    return Image.fromarray(np.stack([grey, grey * 0.97, grey * 0.92], axis=2).astype(np.uint8))


def light_icon(seed: int) -> Image.Image:
    """A light icon, 256 pixels: fourteen overlapping shapes filled with near-white levels (225–252, a little blue)
    and outlined in grey (170–200) on white, drawn at 1,024 pixels and reduced. Brightened by 12 % most of its
    fill clips; brightened by 25 % (:data:`worker.fingerprint.BRIGHTER`) nearly all of it, and only the outlines
    are left."""
    rng = np.random.default_rng(seed)
    picture = Image.new("RGB", (1024, 1024), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    for _ in range(14):
        x, y = rng.integers(0, 800, 2)
        w, h = rng.integers(120, 400, 2)
        level = int(rng.uniform(225, 252))
        fill = (level, min(255, level + 4), min(255, level + 10))
        edge = int(rng.uniform(170, 200))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=fill, outline=(edge, edge, edge + 8), width=6)
    return picture.resize((256, 256), Image.Resampling.LANCZOS)
