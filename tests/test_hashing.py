"""Hashes: the ±1 vector encoding Milvus stores, and the perceptual hash on real photos."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from worker.decision import hamming
from worker.hashing import hamming_from_l2, hash_to_vector, perceptual_hash, sha256_hex
from worker.samples import PHOTOS, brightened, grayscale, photo, resized

bits64 = st.integers(0, (1 << 64) - 1)


@given(bits64, bits64)
def test_squared_l2_of_the_vectors_is_four_times_the_hamming_distance(a: int, b: int) -> None:
    va, vb = hash_to_vector(a), hash_to_vector(b)
    assert va.shape == (64,)
    assert set(np.unique(va)) <= {-1.0, 1.0}
    assert hamming_from_l2(float(np.sum((va - vb) ** 2))) == hamming(a, b)


def test_sha256() -> None:
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_copies_hash_close_and_different_photos_far_apart() -> None:
    base = photo("astronaut.png")
    h = perceptual_hash(base)
    assert hamming(h, perceptual_hash(resized(base))) <= 2
    assert hamming(h, perceptual_hash(grayscale(base))) <= 2
    assert hamming(h, perceptual_hash(brightened(base))) <= 6
    hashes = [perceptual_hash(photo(name)) for name in PHOTOS]
    closest = min(hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :])
    assert closest >= 16
