"""Content hashes: SHA-256 of the bytes (exact stage) and a 64-bit perceptual hash (perceptual stage).

The perceptual hash is stored in Milvus as a 64-d vector of ±1 so that one FLOAT_VECTOR/L2 code path serves
Milvus Lite (which has no BINARY_VECTOR) and Milvus server alike: squared L2 = 4 × Hamming distance.

    >>> h = perceptual_hash(picture)
    >>> hamming_from_l2(float(np.sum((hash_to_vector(h) - hash_to_vector(h ^ 0b111)) ** 2)))
    3
"""

from __future__ import annotations

import hashlib

import imagehash
import numpy as np
from PIL import Image

from worker.decision import HASH_BITS, Vector


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit DCT perceptual hash (pHash) of an image, as an int."""
    return int(str(imagehash.phash(image, hash_size=8)), 16)


def hash_to_vector(value: int) -> Vector:
    """The hash as ±1 floats, most significant bit first."""
    bits = np.array([(value >> (HASH_BITS - 1 - i)) & 1 for i in range(HASH_BITS)], dtype=np.float32)
    return bits * 2.0 - 1.0


def hamming_from_l2(squared_l2: float) -> int:
    """Hamming distance from the squared L2 distance of two ±1 vectors (what Milvus returns for L2)."""
    return round(squared_l2 / 4.0)
