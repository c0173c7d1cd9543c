"""Content hashes: SHA-256 of the bytes (exact stage) and plain perceptual hashes.

The worker's perceptual stage compares no hash bits: it keeps the DCT coefficients that pHash's bits are made of
(:mod:`worker.fingerprint`). :data:`PERCEPTUAL` is that pHash; :data:`HASHERS` holds the plain hashes the quality
harness compares the worker's descriptor with.

    >>> h = perceptual_hash(picture)
    >>> round(float(bits_descriptor(h) @ bits_descriptor(h ^ 0b111)), 4)   # 3 bits apart: 1 − 6/64
    0.9062
    >>> HASHERS["dhash"](picture).bit_length() <= HASHERS["dhash"].bits
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

from worker.decision import DESCRIPTOR_DIM, Vector

HASH_BITS = DESCRIPTOR_DIM  # pHash: one bit per coefficient of the block


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Hasher:
    """A perceptual hash of ``bits`` bits, computed from an RGB picture as an int."""

    name: str
    bits: int
    compute: Callable[[Image.Image], int]
    description: str

    def __call__(self, image: Image.Image) -> int:
        return self.compute(image)


def _imagehash(function: Callable[..., imagehash.ImageHash], image: Image.Image, hash_size: int) -> int:
    return int(str(function(image, hash_size=hash_size)), 16)


def _phash(image: Image.Image) -> int:
    return _imagehash(imagehash.phash, image, 8)


def _dhash(image: Image.Image) -> int:
    return _imagehash(imagehash.dhash, image, 8)


def _whash(image: Image.Image) -> int:
    return _imagehash(imagehash.whash, image, 8)


def _phash256(image: Image.Image) -> int:
    return _imagehash(imagehash.phash, image, 16)


def _pdq(image: Image.Image) -> int:
    import pdqhash  # the `eval` extra: only the quality harness compares with PDQ

    bits, _quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    return int("".join("1" if b else "0" for b in bits), 2)


HASHERS: dict[str, Hasher] = {
    h.name: h
    for h in (
        Hasher("phash", 64, _phash, "imagehash.phash, 8×8 DCT of a 32×32 grey thumbnail"),
        Hasher("dhash", 64, _dhash, "imagehash.dhash, horizontal gradient signs of a 9×8 thumbnail"),
        Hasher("whash", 64, _whash, "imagehash.whash, Haar wavelet of a grey thumbnail"),
        Hasher("phash256", 256, _phash256, "imagehash.phash with hash_size=16 (16×16 DCT)"),
        Hasher("pdq", 256, _pdq, "Meta's PDQ (pdqhash), 16×16 DCT of a 64×64 Jarosz-filtered image"),
    )
}

#: The plain hash the worker's descriptor is built like (the same 8×8 DCT block of a 32×32 thumbnail).
PERCEPTUAL = HASHERS["phash"]
assert PERCEPTUAL.bits == HASH_BITS


def perceptual_hash(image: Image.Image) -> int:
    """The plain pHash (:data:`PERCEPTUAL`) of an image, as an int."""
    return PERCEPTUAL(image)


def bits_descriptor(value: int, bits: int = HASH_BITS) -> Vector:
    """A hash's bits as a unit descriptor (±1/√bits, most significant bit first): two of them have cosine
    ``1 − 2 × hamming / bits``. Lets the harness and tests put plain hashes where the worker's descriptors go."""
    packed = np.frombuffer(value.to_bytes((bits + 7) // 8, "big"), dtype=np.uint8)
    out: Vector = ((np.unpackbits(packed)[-bits:].astype(np.float32) * 2.0 - 1.0) / np.sqrt(bits)).astype(np.float32)
    return out
