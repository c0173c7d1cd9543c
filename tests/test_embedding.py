"""The model: where weights come from, the loud warning for random ones, and the batch contract."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import resnet50

from tooling.samples import photo, resized
from worker.embedding import DIM, IMAGENET_WEIGHTS, Embedder, ModelLoadError, build_backbone, preprocess


def weight(model: torch.nn.Module, name: str) -> torch.Tensor:
    tensor: torch.Tensor = model.state_dict()[name]
    return tensor


@pytest.fixture(scope="module")
def random_embedder() -> Embedder:
    return Embedder.load("random", device="cpu")


def test_random_weights_log_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.embedding"):
        build_backbone("random")
    assert any("RANDOM weights" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_the_noop_model_for_benchmarks_warns_gives_unit_vectors_and_one_cpu_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a model on this CPU, torch gets one intra-op thread: no OpenMP threads spinning between ops."""
    threads = torch.get_num_threads()
    try:
        with caplog.at_level(logging.WARNING, logger="worker.embedding"):
            embedder = Embedder.load("noop", device="cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)  # the rest of this process runs ResNet-50 on the CPU
    assert any("NO-OP" in r.getMessage() for r in caplog.records)
    vectors = embedder.embed([preprocess(photo("chelsea.png")), preprocess(photo("coffee.png"))])
    assert vectors.shape == (2, 2048)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_random_weights_are_the_same_in_every_process() -> None:
    a, b = build_backbone("random"), build_backbone("random")
    assert torch.equal(weight(a, "conv1.weight"), weight(b, "conv1.weight"))


def test_embeddings_are_unit_vectors_and_batching_does_not_change_them(random_embedder: Embedder) -> None:
    images = [preprocess(photo(name)) for name in ("chelsea.png", "coffee.png", "rocket.jpg")]
    assert images[0].shape == (3, 224, 224)
    assert images[0].dtype == torch.uint8
    together = random_embedder.embed(images)
    alone = np.stack([random_embedder.embed([image])[0] for image in images])
    assert together.shape == (3, DIM)
    assert together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_preprocessing_accepts_any_size(random_embedder: Embedder) -> None:
    tall = resized(photo("chelsea.png"), 0.1).resize((5, 300))
    assert preprocess(tall).shape == (3, 224, 224)


def test_a_weights_file_loads_and_reproduces_the_saved_model(tmp_path: Path, random_embedder: Embedder) -> None:
    source = resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = build_backbone(str(path))
    assert torch.equal(weight(loaded, "conv1.weight"), weight(source, "conv1.weight"))
    headless = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    torch.save(headless, path)
    name = "layer4.0.conv1.weight"
    assert torch.equal(weight(build_backbone(str(path)), name), weight(source, name))


def test_imagenet_weights_come_from_torchvisions_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What an online user has after the first download (checkpoints/<file name of the URL>).
    source = resnet50(weights=None)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(source.state_dict(), cache / IMAGENET_WEIGHTS.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert torch.equal(weight(build_backbone("imagenet"), "conv1.weight"), weight(source, "conv1.weight"))


def test_imagenet_without_network_or_cache_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # nothing listens there: fails at once, offline or not
    expected = r"DEDUP_MODEL_WEIGHTS=imagenet: could not download .*set DEDUP_MODEL_WEIGHTS"
    with pytest.raises(ModelLoadError, match=expected):
        build_backbone("imagenet")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"not a torch file", "not a loadable PyTorch file"),
        ({"conv1.weight": torch.zeros(1)}, "not a torchvision ResNet-50 state_dict"),
    ],
)
def test_a_bad_weights_file_fails_naming_the_variable(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ModelLoadError, match=f"DEDUP_MODEL_WEIGHTS={path}: {message}"):
        build_backbone(str(path))


def test_asking_for_cuda_without_it_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match="DEDUP_DEVICE=cuda: CUDA is not available"):
        Embedder.load("random", device="cuda")


def test_a_compiled_model_embeds_batches_of_any_size_as_the_eager_one(random_embedder: Embedder) -> None:
    """DEDUP_COMPILE_MODE: compiled once, at load, for batches padded to the batch size; the padding's rows are
    dropped, so every batch size gives the eager model's vectors."""
    compiled = Embedder(build_backbone("random"), torch.device("cpu"), compile_mode="default", batch_size=4)
    assert compiled.padded_to == 4
    images = [preprocess(photo(name)) for name in ("chelsea.png", "coffee.png", "rocket.jpg")]
    for batch in (images, images[:1]):
        vectors = compiled.embed(batch)
        assert vectors.shape == (len(batch), 2048)
        assert np.allclose(vectors, random_embedder.embed(batch), atol=1e-4)
