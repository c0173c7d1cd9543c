"""Content hashes: SHA-256 of the bytes (exact stage) and a perceptual hash (perceptual stage).

The worker's perceptual hash is :data:`PERCEPTUAL` (64-bit DCT pHash, chosen with ``python -m worker.eval``;
README "Detection quality"). :data:`HASHERS` holds the candidates the harness compares it with.

A hash is stored in Milvus as a vector of ±1, one per bit, so that one FLOAT_VECTOR/L2 code path serves
Milvus Lite (which has no BINARY_VECTOR) and Milvus server alike: squared L2 = 4 × Hamming distance.

    >>> h = perceptual_hash(picture)
    >>> hamming_from_l2(float(np.sum((hash_to_vector(h) - hash_to_vector(h ^ 0b111)) ** 2)))
    3
    >>> hamming_from_ip(float(hash_to_vector(h) @ hash_to_vector(h ^ 0b111)))
    3
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

from worker.decision import HASH_BITS, Vector


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

#: The worker's perceptual hash. Its width is the Milvus ``phash`` field's dimension.
PERCEPTUAL = HASHERS["phash"]
assert PERCEPTUAL.bits == HASH_BITS


def perceptual_hash(image: Image.Image) -> int:
    """The worker's perceptual hash (:data:`PERCEPTUAL`) of an image, as an int."""
    return PERCEPTUAL(image)


def hash_to_vector(value: int, bits: int = HASH_BITS) -> Vector:
    """The hash as ±1 floats, most significant bit first."""
    packed = np.frombuffer(value.to_bytes((bits + 7) // 8, "big"), dtype=np.uint8)
    out = np.unpackbits(packed)[-bits:].astype(np.float32)
    return out * 2.0 - 1.0


def hamming_from_l2(squared_l2: float) -> int:
    """Hamming distance from the squared L2 distance of two ±1 vectors (what Milvus returns for L2)."""
    return round(squared_l2 / 4.0)


def hamming_from_ip(inner_product: float, bits: int = HASH_BITS) -> int:
    """Hamming distance from the inner product of two ±1 vectors (what Milvus returns for IP): ``bits − 2 × d``."""
    return round((bits - inner_product) / 2.0)
