"""``make bench``: end-to-end images/s through the worker against model-only images/s, in one run.

    python -m worker.bench [--images 192] [--batch-size 32] [--weights random] [--device auto]

1. *Model only*: ResNet-50 on preprocessed tensors, ``--batch-size`` at a time — the ceiling.
2. *End to end*: the same images uploaded to the local S3 server, enqueued (as a backfill would) and taken
   through ``celery -A worker worker`` with the same batch size: download, decode, hash, embed, search Milvus
   Lite, decide, tag. Timed from the first enqueue to the last outcome counted in ``dedup_images_total``.

It prints both rates, their ratio, and where the worker's time went (per-stage sums from its metrics). Weights
do not change the speed, so random weights are the default (no download needed).
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client.parser import text_string_to_metric_families

from worker.localstack import LocalStack, free_port, wait_until
from worker.samples import PHOTOS, jpeg, photo

BUCKET = "bench"
cli = typer.Typer(add_completion=False)


def make_images(count: int, seed: int = 7) -> list[bytes]:
    """``count`` JPEGs (≤ 640 px) cut at random from the sample photos: varied content, realistic sizes."""
    rng = random.Random(seed)  # noqa: S311 - reproducible crops, not security
    images = []
    for i in range(count):
        source = photo(PHOTOS[i % len(PHOTOS)])
        w, h = source.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = source.crop((x, y, x + cw, y + ch))
        crop.thumbnail((640, 640))
        images.append(jpeg(crop, 85))
    return images


def model_only(images: list[bytes], batch_size: int, weights: str, device: str) -> tuple[float, str]:
    from worker.embedding import Embedder, preprocess
    from worker.imaging import decode

    embedder = Embedder.load(weights, device)
    tensors = [preprocess(decode(data, max_pixels=100_000_000, min_side=256)) for data in images]
    batches = [tensors[i : i + batch_size] for i in range(0, len(tensors), batch_size)]
    embedder.embed(batches[0])  # warm-up (allocations, cuDNN autotuning)
    if embedder.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        embedder.embed(batch)  # returns host arrays: includes the device→host copy, as the worker does
    return len(tensors) / (time.perf_counter() - start), str(embedder.device)


def scrape(port: int) -> dict[str, float]:
    """Sum every sample of the worker's /metrics by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{label}}}"] = sample.value
    return values


def processed(values: dict[str, float]) -> float:
    return sum(v for k, v in values.items() if k.startswith("dedup_images_total{"))


def end_to_end(
    images: list[bytes], batch_size: int, weights: str, device: str, root: Path
) -> tuple[float, dict[str, float]]:
    from producer.enqueue import Enqueuer
    from worker.celery_app import create_app
    from worker.config import load_settings
    from worker.messages import PROCESS_TASK, ObjectEvent

    with LocalStack(root, buckets=(BUCKET,)) as stack:
        port = free_port()
        env = {
            "DEDUP_MODEL_WEIGHTS": weights,
            "DEDUP_DEVICE": device,
            "DEDUP_BATCH_SIZE": str(batch_size),
            "DEDUP_METRICS_PORT": str(port),
        }
        stack.start_worker("bench-worker", env)
        storage = stack.storage()
        base = int(time.time() * 1000)
        events = []
        for i, data in enumerate(images):
            key = f"img-{i:05d}.jpg"
            etag = storage.put(BUCKET, key, data, "image/jpeg")
            events.append((PROCESS_TASK, ObjectEvent(BUCKET, key, base + i, etag=etag, size=len(data))))
        settings = load_settings(broker_url=stack.broker_url, buckets=(BUCKET,))
        enqueuer = Enqueuer(create_app(settings, include_tasks=False), queue=settings.queue, source="bench")
        start = time.perf_counter()
        enqueuer.send(events)
        wait_until(lambda: processed(scrape(port)) >= len(images), 3600, "every image", interval=0.2)
        elapsed = time.perf_counter() - start
        return len(images) / elapsed, scrape(port)


@cli.command()
def main(
    images: Annotated[int, typer.Option(min=8, help="How many images")] = 192,
    batch_size: Annotated[int, typer.Option(min=1, help="DEDUP_BATCH_SIZE for both runs")] = 32,
    weights: Annotated[str, typer.Option(help="random (default), imagenet or a file: speed is the same")] = "random",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
) -> None:
    """Measure end-to-end throughput against the model alone, in one run."""
    logging.basicConfig(level=logging.WARNING)
    data = make_images(images)
    typer.echo(f"{images} JPEGs (≤640 px, {sum(map(len, data)) / len(data) / 1024:.0f} KiB mean), batch {batch_size}")
    model_rate, where = model_only(data, batch_size, weights, device)
    typer.echo(f"model only     {model_rate:8.1f} images/s   (ResNet-50 on {where})")
    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        e2e_rate, values = end_to_end(data, batch_size, weights, device, Path(tmp))
    typer.echo(f"end to end     {e2e_rate:8.1f} images/s   (S3 → decode → hash → embed → Milvus → decide → tag)")
    typer.echo(f"ratio          {e2e_rate / model_rate:8.2f}   end-to-end / model-only")
    typer.echo("\nworker time by stage (sum over images or batches, seconds):")
    for stage in ("download", "decode", "hash", "embed", "search", "act"):
        total = values.get(f"dedup_stage_seconds_sum{{stage={stage}}}", 0.0)
        count = values.get(f"dedup_stage_seconds_count{{stage={stage}}}", 0.0)
        typer.echo(f"  {stage:<9} {total:8.2f} s over {count:5.0f} calls")
    batches = values.get("dedup_batch_size_count{stage=embed}", 0.0)
    if batches:
        mean = values.get("dedup_batch_size_sum{stage=embed}", 0.0) / batches
        typer.echo(f"  mean embed batch {mean:.1f} images over {batches:.0f} batches")


if __name__ == "__main__":
    cli()
