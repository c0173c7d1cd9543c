"""ResNet-50 image embeddings: the 2048-d penultimate feature, L2-normalised, computed in batches.

Weights come from one of three places (``DEDUP_MODEL_WEIGHTS``):

* ``imagenet`` — torchvision's ``IMAGENET1K_V2`` weights, downloaded once into ``$TORCH_HOME`` (hash-checked);
* a file path — a ResNet-50 ``state_dict`` saved with ``torch.save`` (e.g. the file torchvision downloads), for
  machines without internet;
* ``random`` — a fixed random initialisation, for tests only. Its features carry no meaning (every pair of
  images has cosine ≈ 0.998), so loading it logs a loud warning and the semantic stage stays out of decisions
  unless its threshold is set explicitly;
* ``noop`` — no ResNet-50 at all: a fixed projection of each image's mean colour, for ``make bench``'s
  model-free mode, which measures everything around the model (same loud warning, same semantic rule).

Preprocessing follows the weights' ImageNet evaluation recipe (resize the short side to 232, centre-crop 224).
It runs on the CPU in the task threads and yields uint8 tensors; normalisation happens batched on the device.

    >>> embedder = Embedder.load("random", device="cpu")
    >>> vectors = embedder.embed([preprocess(picture)])
    >>> vectors.shape
    (1, 2048)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50
from torchvision.transforms.v2 import functional as tvf

from worker.config import EMBEDDING_DIM, env_name
from worker.decision import Vector

log = logging.getLogger(__name__)

DIM = EMBEDDING_DIM
RESIZE = 232  # ResNet50_Weights.IMAGENET1K_V2.transforms(): resize 232, crop 224, bilinear
CROP = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGENET_WEIGHTS = ResNet50_Weights.IMAGENET1K_V2

RANDOM_WEIGHTS_WARNING = (
    "\n" + "!" * 100 + "\n"
    "!! DEDUP_MODEL_WEIGHTS=random: ResNet-50 runs with RANDOM weights. Its embeddings are MEANINGLESS\n"
    "!! (every pair of images looks alike). Use this for tests only; the semantic stage takes no part in\n"
    "!! decisions unless DEDUP_SEMANTIC_THRESHOLD is set explicitly.\n" + "!" * 100
)


class ModelLoadError(RuntimeError):
    """The weights could not be loaded; the message names DEDUP_MODEL_WEIGHTS and what to do."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"{env_name('device')}={name}: CUDA is not available on this machine")
    return device


def preprocess(image: Image.Image) -> torch.Tensor:
    """An RGB picture → the model's uint8 input, 3×224×224 (resize short side to 232, centre crop)."""
    resized = tvf.resize(image, [RESIZE], interpolation=tvf.InterpolationMode.BILINEAR, antialias=True)
    cropped = tvf.center_crop(resized, [CROP, CROP])
    tensor: torch.Tensor = tvf.pil_to_tensor(cropped)
    return tensor


class NoopBackbone(nn.Module):
    """Stands in for ResNet-50 when only the work around the model is measured: each image's mean colour
    through a fixed 3 → 2048 projection (a valid, cheap, meaningless unit vector after normalising)."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.projection = nn.Parameter(torch.randn(3, DIM, generator=generator), requires_grad=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = images.mean(dim=(2, 3)) @ self.projection + 1.0
        return features


def build_backbone(weights: str) -> nn.Module:
    """ResNet-50 without its classifier, with weights from ``imagenet``, ``random`` or a file path; or the
    :class:`NoopBackbone` for ``noop``."""
    if weights.lower() == "noop":
        log.warning(RANDOM_WEIGHTS_WARNING.replace("runs with RANDOM weights", "is replaced by a NO-OP (benchmarks)"))
        return NoopBackbone().eval()
    if weights.lower() == "random":
        log.warning(RANDOM_WEIGHTS_WARNING)
        with torch.random.fork_rng(devices=[]):  # the same "random" model in every process
            torch.manual_seed(0)
            model: nn.Module = resnet50(weights=None)
    else:
        model = resnet50(weights=None)
        if weights.lower() == "imagenet":
            model.load_state_dict(_download_imagenet())
        else:
            _load_file(model, Path(weights))
    model.fc = nn.Identity()
    return model.eval()


def _download_imagenet() -> Mapping[str, torch.Tensor]:
    try:
        state: Mapping[str, torch.Tensor] = IMAGENET_WEIGHTS.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:
        raise ModelLoadError(
            f"{env_name('model_weights')}=imagenet: could not download {IMAGENET_WEIGHTS.url} ({exc}). "
            f"Without internet, copy that file here and set {env_name('model_weights')} to its path."
        ) from exc
    return state


def _load_file(model: nn.Module, path: Path) -> None:
    where = f"{env_name('model_weights')}={path}"
    if not path.is_file():
        raise ModelLoadError(f"{where}: no such file (expected imagenet, random or a ResNet-50 state_dict file)")
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{where}: not a loadable PyTorch file ({exc})") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict):
        raise ModelLoadError(f"{where}: expected a state_dict, found {type(loaded).__name__}")
    state = {k.removeprefix("module."): v for k, v in loaded.items()}
    not_resnet = f"{where}: not a torchvision ResNet-50 state_dict"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit
        raise ModelLoadError(f"{not_resnet} ({str(exc).splitlines()[-1].strip()})") from exc
    backbone_missing = [k for k in missing if not k.startswith("fc.")]
    if backbone_missing or unexpected:
        raise ModelLoadError(f"{not_resnet} (missing {backbone_missing[:3]}, unexpected {list(unexpected)[:3]})")


class Embedder:
    """Runs the backbone on batches of preprocessed images: fp16 and channels-last on CUDA, fp32 on CPU.

    With ``compile_mode`` (``DEDUP_COMPILE_MODE``) the backbone runs under ``torch.compile`` for one shape: every
    batch is padded to ``batch_size`` (a batch comes in any size up to it, and each new shape would compile
    again), and the compiling happens here, before the worker takes messages, not on its first batch."""

    def __init__(
        self, model: nn.Module, device: torch.device, *, compile_mode: str = "off", batch_size: int = 32
    ) -> None:
        if device.type != "cpu" or isinstance(model, NoopBackbone):
            # The model runs elsewhere (a GPU) or not at all: torch's CPU work is stacking a batch, which one
            # intra-op thread does as fast, and OpenMP's idle threads would spin after every parallel op (in the
            # model-free bench that spinning was a third of the worker's CPU outside the stages).
            torch.set_num_threads(1)
        self.device = device
        self.half = device.type == "cuda"
        dtype = torch.float16 if self.half else torch.float32
        self.model = model.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)
        self._mean = torch.tensor(MEAN, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(STD, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
        self.padded_to = 0  # batches are padded to this size (compiled for it); 0: run as they come
        if compile_mode != "off" and not isinstance(model, NoopBackbone):
            self._compile(compile_mode, batch_size)

    def _compile(self, mode: str, batch_size: int) -> None:
        started = time.perf_counter()
        self.model = torch.compile(self.model, mode=mode, dynamic=False)  # type: ignore[assignment]
        self.padded_to = batch_size
        try:
            self.embed([torch.zeros(3, CROP, CROP, dtype=torch.uint8)])  # compiles, for the one padded shape
        except Exception as exc:  # no C++ compiler, an unsupported device...: asked for, so refused loudly
            raise ModelLoadError(f"{env_name('compile_mode')}={mode}: torch.compile failed: {exc}") from exc
        log.info(
            "model compiled (torch.compile mode=%s, batches of %d) in %.0f s",
            mode,
            batch_size,
            time.perf_counter() - started,
        )

    @classmethod
    def load(cls, weights: str, device: str = "auto", *, compile_mode: str = "off", batch_size: int = 32) -> Embedder:
        resolved = resolve_device(device)
        embedder = cls(build_backbone(weights), resolved, compile_mode=compile_mode, batch_size=batch_size)
        log.info("ResNet-50 ready on %s (%s, weights=%s)", resolved, "fp16" if embedder.half else "fp32", weights)
        return embedder

    @torch.inference_mode()
    def embed(self, images: Sequence[torch.Tensor]) -> Vector:
        """uint8 3×224×224 tensors → an N×2048 float32 array of unit vectors."""
        images = list(images)
        count = len(images)
        if count < self.padded_to:  # the compiled shape; the padding's rows are dropped below
            images += [images[0]] * (self.padded_to - count)
        batch = torch.stack(images).to(self.device, non_blocking=True)
        batch = batch.to(dtype=self._mean.dtype).contiguous(memory_format=torch.channels_last)
        features = self.model((batch - self._mean) / self._std).float()
        features = nn.functional.normalize(features[:count], dim=1)
        return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)
