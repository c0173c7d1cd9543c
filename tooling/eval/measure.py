"""The worker's signals for every item of a :class:`~tooling.eval.dataset.Dataset`, computed by the worker's code.

Each item is decoded with :func:`worker.imaging.decode` (as the pipeline does), hashed with
:func:`worker.hashing.sha256_hex` and the :data:`worker.hashing.HASHERS` asked for, and — for the semantic
stage — preprocessed and embedded by :mod:`tooling.eval.semantic` (the worker's ``preprocess`` and ``Embedder``).
Torch is imported only when a semantic setup or an input comparison is asked for.

    >>> measured = measure(data, hashers=["phash"], semantic=[SemanticSetup("crop", "avg")], weights="random")
    >>> len(measured.hashes["phash"]), measured.embeddings["crop/avg"].shape
    (1427, (1427, 2048))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from tooling.eval.dataset import Dataset, decode
from worker.fingerprint import Fingerprint, fingerprint
from worker.hashing import HASHERS, sha256_hex

if TYPE_CHECKING:
    import torch

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SemanticSetup:
    """``preprocess``: ``crop`` (the worker's) or ``resize``; ``pooling``: ``avg`` (the worker's), ``max``, ``gem``."""

    preprocess: str
    pooling: str

    @property
    def name(self) -> str:
        return f"{self.preprocess}/{self.pooling}"


@dataclass
class Measured:
    sha256: list[str]
    hashes: dict[str, list[int]]  # hasher name → one hash per item (the comparison of plain hashes)
    fingerprints: list[Fingerprint] = field(default_factory=list)  # the worker's perceptual stage
    embeddings: dict[str, Matrix] = field(default_factory=dict)  # setup name → N×2048 unit rows
    inputs: dict[str, Matrix] = field(default_factory=dict)  # preprocessing → N×VIEW_SIDE² standardised rows


def measure(
    data: Dataset,
    *,
    hashers: Sequence[str],
    semantic: Sequence[SemanticSetup] = (),
    inputs: Sequence[str] = (),
    weights: str = "random",
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
) -> Measured:
    """Decode and hash every item; embed it for each semantic setup; keep grey views of model inputs."""
    preprocessings = sorted({s.preprocess for s in semantic} | set(inputs))
    if preprocessings:
        from tooling.eval import semantic as sem
    out = Measured([], {name: [] for name in hashers})
    pixels: dict[str, list[torch.Tensor]] = {p: [] for p in preprocessings}
    views: dict[str, list[npt.NDArray[np.float32]]] = {p: [] for p in inputs}
    embedded = {s.preprocess for s in semantic}
    for item in tqdm(data.items, desc="decode + hash", unit="img", disable=not progress):
        picture = decode(item.data)
        out.sha256.append(sha256_hex(item.data))
        out.fingerprints.append(fingerprint(picture))
        for name in hashers:
            out.hashes[name].append(HASHERS[name](picture))
        for p in preprocessings:
            tensor = sem.model_input(picture, p)
            if p in views:
                views[p].append(sem.grey_view(tensor))
            if p in embedded:
                pixels[p].append(tensor)
    out.inputs = {p: np.stack(rows) for p, rows in views.items()}
    for setup in semantic:
        embedder = sem.load_embedder(weights, device, setup.pooling)
        out.embeddings[setup.name] = sem.embed_all(
            embedder, pixels[setup.preprocess], batch_size, desc=f"embed {setup.name}", progress=progress
        )
    return out
