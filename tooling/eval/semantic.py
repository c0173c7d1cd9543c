"""The semantic stage as the worker runs it, plus the alternatives the harness compares it with.

``crop`` preprocessing is :func:`worker.embedding.preprocess` itself (torchvision's ImageNet evaluation recipe
for these weights: short side to 232, centre crop 224); ``resize`` squashes the whole image to 224×224, keeping
borders a centre crop would cut. ``avg`` pooling is the backbone's own global average pool; ``max`` and ``gem``
(generalised mean, p=3, common in image retrieval) replace it.

    >>> embedder = load_embedder("random", "cpu", "gem")
    >>> vectors = embed_all(embedder, [model_input(picture, "resize")], batch_size=16)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as tvf
from tqdm import tqdm

from worker.embedding import CROP, Embedder, build_backbone, preprocess, resolve_device

#: Side of the grey view of a model input that the input comparison correlates (what the model gets to see).
VIEW_SIDE = 32
PREPROCESSINGS = ("crop", "resize")
POOLINGS = ("avg", "max", "gem")


class GeM(nn.Module):
    """Generalised-mean pooling with p=3 (Radenović et al., fine-tuning CNN image retrieval)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=1e-6).pow(3).mean(dim=(-2, -1), keepdim=True).pow(1 / 3)


def model_input(image: Image.Image, preprocessing: str) -> torch.Tensor:
    """The uint8 3×224×224 model input under a preprocessing; ``crop`` is the worker's own function."""
    if preprocessing == "crop":
        return preprocess(image)
    if preprocessing == "resize":
        resized = tvf.resize(image, [CROP, CROP], interpolation=tvf.InterpolationMode.BILINEAR, antialias=True)
        tensor: torch.Tensor = tvf.pil_to_tensor(resized)
        return tensor
    raise ValueError(f"unknown preprocessing {preprocessing!r}: use one of {PREPROCESSINGS}")


def grey_view(pixels: torch.Tensor) -> npt.NDArray[np.float32]:
    """A model input as a small grey picture with zero mean and unit norm: dot products are correlations."""
    view: torch.Tensor = tvf.resize(pixels, [VIEW_SIDE, VIEW_SIDE], antialias=True)
    small: npt.NDArray[np.float32] = view.float().mean(dim=0).flatten().numpy()
    small = small - small.mean()
    norm = float(np.linalg.norm(small)) or 1.0
    return (small / norm).astype(np.float32)


def load_embedder(weights: str, device: str, pooling: str) -> Embedder:
    """The worker's :class:`Embedder` on the worker's backbone; a pooling other than ``avg`` swaps the pool."""
    backbone = build_backbone(weights)
    if pooling == "max":
        backbone.avgpool = nn.AdaptiveMaxPool2d(1)
    elif pooling == "gem":
        backbone.avgpool = GeM()
    elif pooling != "avg":
        raise ValueError(f"unknown pooling {pooling!r}: use one of {POOLINGS}")
    return Embedder(backbone, resolve_device(device))


def embed_all(
    embedder: Embedder, tensors: Sequence[torch.Tensor], batch_size: int, *, desc: str = "embed", progress: bool = True
) -> npt.NDArray[np.float32]:
    """Unit embeddings of every tensor, ``batch_size`` at a time, with a progress bar."""
    starts = range(0, len(tensors), batch_size)
    rows = [
        embedder.embed(tensors[s : s + batch_size]) for s in tqdm(starts, desc=desc, unit="batch", disable=not progress)
    ]
    return np.concatenate(rows).astype(np.float32)
