"""Hashes: bit hashes as unit descriptors (what the harness and the tests compare like the worker's), and the plain
perceptual hash on real photos."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tooling.samples import PHOTOS, brightened, grayscale, photo, resized
from worker.decision import similarity
from worker.hashing import HASH_BITS, bits_descriptor, perceptual_hash, sha256_hex

bits64 = st.integers(0, (1 << 64) - 1)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@given(bits64, bits64)
def test_the_similarity_of_two_bit_descriptors_is_one_minus_hamming_over_32(a: int, b: int) -> None:
    va, vb = bits_descriptor(a), bits_descriptor(b)
    assert va.shape == (HASH_BITS,) == (64,)
    assert va.dtype == np.float32
    assert set(np.unique(va)) <= {-0.125, 0.125}
    assert float(np.linalg.norm(va)) == 1.0
    assert similarity(va, vb) == 1 - hamming(a, b) / 32  # exact: every product is ±1/64


def test_a_bit_descriptor_puts_the_most_significant_bit_first() -> None:
    top = bits_descriptor(1 << 63)
    assert top[0] == 0.125
    assert (top[1:] == -0.125).all()
    assert bits_descriptor(1)[-1] == 0.125
    assert (bits_descriptor(1)[:-1] == -0.125).all()


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
