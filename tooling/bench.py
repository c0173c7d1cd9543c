"""``make bench``: what the worker reaches against what its model alone reaches, and where its CPU goes.

    python -m tooling.bench [--images 384] [--batch-size 32] [--weights random] [--device auto]
                           [--processes 1,2] [--camera 96] [--skip-model] [--profile worker.speedscope.json]
                           [--compile reduce-overhead] [--growth 9600]

Everything runs on one local stack (redis-server, the S3 server — MinIO if on PATH, else moto's — and a Milvus
Lite server process that several workers can share, as a Milvus server would be), in one run:

1. **Model only** — ResNet-50 on preprocessed tensors, ``--batch-size`` at a time: the ceiling.
2. **End to end** — the images uploaded, enqueued (as a backfill would) and taken through ``celery -A worker
   worker`` with the same batch size: download, decode, hash, embed, search, decide, tag. Timed from the first
   enqueue to the last outcome counted in ``dedup_images_total``; the ratio to (1) is the figure to watch.
   **Perceptual-only** beside it: the same images through one worker process started with
   ``DEDUP_MODEL_WEIGHTS=none`` (no model loaded, no embedding stored or searched: exact and perceptual stages
   only), what a worker without the semantic stage reaches per CPU process. It runs with ``--skip-model`` too.
3. **Model-free ceiling** — the same pipeline with ``DEDUP_MODEL_WEIGHTS=noop`` (no ResNet-50), for small web
   images with 1, 2, … worker processes, and for camera-size JPEGs (12 MP, baseline and progressive): how fast
   everything *around* the model can go, and the worker's CPU milliseconds per image by stage (from
   ``dedup_stage_cpu_seconds_total``; *other* is the rest of the process: Celery, Redis, client libraries,
   logging). The CPU of the S3, Milvus and Redis servers per image is listed beside it.
4. **S3 server ceiling** — requests/s the S3 server answers on its own (tag reads from 16 threads), so that a
   figure bounded by it (moto is one Python process) says so.
5. **Milvus Lite as the collection grows** (``--growth N``) — a fresh Lite server filled with N synthetic
   originals a batch at a time (search, then store, as the worker does), with this service's Lite settings
   (:mod:`worker.lite`) and with the engine's defaults: the server's CPU per image at each step. The runs above
   start from an empty collection; this shows what a full one costs.

Weights do not change the speed, so random weights are the default (no download needed). ``--profile`` samples
the first model-free worker with py-spy (``--gil``: the thread holding the GIL, which is what caps a process) into
a speedscope file (open it at https://www.speedscope.app); this is how the figures in BENCHMARKS.md were found.
"""

from __future__ import annotations

import io
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import typer
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tooling.localstack import LocalStack, Service, free_port
from tooling.samples import PHOTOS, jpeg, photo
from worker import lite
from worker.config import DEFAULT_PERCEPTUAL_THRESHOLD, NO_MODEL
from worker.decision import BRIGHT, DESCRIPTOR_DIM, Look, Signals, Thresholds
from worker.metrics import STAGES

BUCKET = "bench"
CAMERA = (4000, 3000)  # 12 MP
#: S3 requests the worker makes per image in tag mode: GET object, GET tags, PUT tags.
S3_REQUESTS_PER_IMAGE = 3
cli = typer.Typer(add_completion=False)
_TICK = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))


def make_images(count: int, seed: int = 7) -> list[bytes]:
    """``count`` JPEGs (≤ 640 px) cut at random from the sample photos: varied content, realistic sizes."""
    rng = random.Random(seed)  # noqa: S311 - reproducible crops, not security
    images = []
    for i in range(count):
        crop = _crop(photo(PHOTOS[i % len(PHOTOS)]), rng)
        crop.thumbnail((640, 640))
        images.append(jpeg(crop, 85))
    return images


def make_camera_images(count: int, *, progressive: bool, seed: int = 11) -> list[bytes]:
    """``count`` 12 MP JPEGs (quality 90) of random crops of the sample photos, with sensor-like noise so that
    they weigh what camera files weigh (2.5–3 MB), baseline or progressive."""
    rng = random.Random(seed)  # noqa: S311
    noise = np.random.default_rng(seed)
    images = []
    for i in range(count):
        big = _crop(photo(PHOTOS[i % len(PHOTOS)]), rng).resize(CAMERA, Image.Resampling.BICUBIC)
        grain = noise.integers(-12, 13, size=(CAMERA[1], CAMERA[0], 3), dtype=np.int16)
        pixels = np.asarray(big, dtype=np.int16) + grain
        out = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            out, "JPEG", quality=90, progressive=progressive, optimize=progressive
        )
        images.append(out.getvalue())
    return images


def _crop(source: Image.Image, rng: random.Random) -> Image.Image:
    w, h = source.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return source.crop((x, y, x + cw, y + ch))


def model_only(
    images: list[bytes], batch_size: int, weights: str, device: str, compile_mode: str = ""
) -> tuple[float, str]:
    """Images/s of the model alone on preprocessed tensors; with ``compile_mode``, compiled as the worker compiles
    it (``DEDUP_COMPILE_MODE``; ``reduce-overhead`` uses CUDA graphs on a GPU)."""
    from worker.embedding import Embedder, preprocess
    from worker.imaging import decode

    embedder = Embedder.load(weights, device, compile_mode=compile_mode or "off", batch_size=batch_size)
    tensors = [preprocess(decode(data, max_pixels=100_000_000, min_side=256)) for data in images]
    batches = [tensors[i : i + batch_size] for i in range(0, len(tensors), batch_size)]
    full = [batch for batch in batches if len(batch) == batch_size] or batches  # one shape: no recompiling
    for _ in range(3 if compile_mode else 1):
        embedder.embed(full[0])  # warm-up (allocations, cuDNN autotuning)
    if embedder.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in full:
        embedder.embed(batch)  # returns host arrays: includes the device→host copy, as the worker does
    return sum(map(len, full)) / (time.perf_counter() - start), str(embedder.device)


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


def cpu_seconds(service: Service) -> float:
    """User + system CPU of a service's process so far (Linux ``/proc``)."""
    assert service.process is not None
    fields = Path(f"/proc/{service.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class Run:
    """One pass of a set of images through the workers."""

    label: str
    images: int
    seconds: float
    worker_cpu_s: float  # all worker processes
    stage_cpu_s: dict[str, float]
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    embed_batches: float = 0.0
    embedded: float = 0.0
    rechecks: dict[str, float] = field(default_factory=dict)  # dedup_rechecks_total by result

    @property
    def rechecked(self) -> float:
        """Share of the batches of new originals that were searched again (another worker stored meanwhile)."""
        total = sum(self.rechecks.values())
        return self.rechecks.get("searched", 0.0) / total if total else 0.0

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    def ms(self, seconds: float) -> float:
        return seconds / self.images * 1000

    @property
    def outside(self) -> float:
        """Worker CPU ms per image outside decoding and the model."""
        return self.ms(self.worker_cpu_s - self.stage_cpu_s.get("decode", 0.0) - self.stage_cpu_s.get("embed", 0.0))


class Bench:
    """A local stack with a shared Milvus Lite server, on which workers are started per run."""

    def __init__(self, stack: LocalStack, milvus: Service, milvus_uri: str, batch_size: int, device: str) -> None:
        self.stack, self.milvus, self.milvus_uri = stack, milvus, milvus_uri
        self.batch_size, self.device = batch_size, device
        self._runs = 0

    def run(
        self,
        label: str,
        images: list[bytes],
        *,
        weights: str,
        processes: int = 1,
        profile: Path | None = None,
        compile_mode: str = "",
    ) -> Run:
        from producer.enqueue import Enqueuer
        from worker.celery_app import create_app
        from worker.config import load_settings
        from worker.messages import PROCESS_TASK, ObjectEvent

        self._runs += 1
        collection = f"bench_{self._runs}"  # a fresh index per run: every run starts from the same state
        workers: list[tuple[Service, int]] = []
        for n in range(processes):
            port = free_port()
            env = {
                "DEDUP_MODEL_WEIGHTS": weights,
                "DEDUP_DEVICE": self.device,
                "DEDUP_BATCH_SIZE": str(self.batch_size),
                "DEDUP_METRICS_PORT": str(port),
                "DEDUP_MILVUS_URI": self.milvus_uri,
                "DEDUP_COLLECTION": collection,
                "DEDUP_COMPILE_MODE": compile_mode or "off",
            }
            workers.append((self.stack.start_worker(f"bench-{self._runs}-{n}", env), port))
        try:
            storage = self.stack.storage()
            base = int(time.time() * 1000)
            events = []
            for i, data in enumerate(images):
                key = f"run{self._runs}/img-{i:05d}.jpg"
                etag = storage.put(BUCKET, key, data, "image/jpeg")
                events.append((PROCESS_TASK, ObjectEvent(BUCKET, key, base + i, etag=etag, size=len(data))))
            settings = load_settings(broker_url=self.stack.broker_url, buckets=(BUCKET,))
            enqueuer = Enqueuer(create_app(settings, include_tasks=False), queue=settings.queue, source="bench")
            servers = {
                "S3": self.stack.s3_service,
                "Milvus Lite": self.milvus,
                "Redis": self.stack.redis_service,
            }
            before = [scrape(port) for _, port in workers]
            cpu_before = [cpu_seconds(worker) for worker, _ in workers]
            servers_before = {name: cpu_seconds(s) for name, s in servers.items()}
            spy = _profiler(workers[0][0], profile) if profile else None
            start = time.perf_counter()
            enqueuer.send(events)
            await_count(lambda: sum(processed(scrape(p)) for _, p in workers), len(images), start)
            elapsed = time.perf_counter() - start
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy.wait(timeout=60)
            after = [scrape(port) for _, port in workers]
            worker_cpu = sum(cpu_seconds(w) - c for (w, _), c in zip(workers, cpu_before, strict=True))
            stage_cpu = {
                stage: _total(after, before, f"dedup_stage_cpu_seconds_total{{stage={stage}}}") for stage in STAGES
            }
            return Run(
                label,
                len(images),
                elapsed,
                worker_cpu,
                stage_cpu,
                {name: cpu_seconds(s) - servers_before[name] for name, s in servers.items()},
                _total(after, before, "dedup_batch_size_count{stage=embed}"),
                _total(after, before, "dedup_batch_size_sum{stage=embed}"),
                {r: _total(after, before, f"dedup_rechecks_total{{result={r}}}") for r in ("searched", "skipped")},
            )
        finally:
            for worker, _ in workers:
                self.stack.stop_service(worker)

    def s3_ceiling(self, seconds: float = 3.0, threads: int = 16) -> float:
        """Requests/s the S3 server answers: tag reads of one object from ``threads`` threads."""
        storage = self.stack.storage()
        storage.put(BUCKET, "probe.bin", b"probe")
        count = [0] * threads
        deadline = time.perf_counter() + seconds

        def hammer(slot: int) -> None:
            while time.perf_counter() < deadline:
                storage.get_tags(BUCKET, "probe.bin")
                count[slot] += 1

        pool = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
        start = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return sum(count) / (time.perf_counter() - start)


def await_count(count: Callable[[], float], total: int, start: float, timeout_s: float = 3600.0) -> None:
    """Wait until ``count()`` reaches ``total``, asking less often while the end is far: each ``/metrics`` scrape
    costs the worker CPU that the figures would count. Sleeps half the time the rate so far says is left (between
    0.05 and 1 s), so the end is seen within about 0.05 s."""
    deadline = start + timeout_s
    while (done := count()) < total:
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"{done:.0f} of {total} images after {timeout_s:.0f} s")
        left = (total - done) * (now - start) / done if done else 1.0
        time.sleep(min(1.0, max(0.05, left / 2)))


def _profiler(worker: Service, output: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` on a worker process until SIGINT: the GIL holder's stacks, every thread, as speedscope."""
    assert worker.process is not None
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [binary, "record", "--gil", "--nonblocking", "--rate", "100", "--format", "speedscope"]
    argv += ["--output", str(output), "--pid", str(worker.process.pid)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)


def _total(after: Sequence[dict[str, float]], before: Sequence[dict[str, float]], name: str) -> float:
    """How much the metric ``name`` grew, summed over the workers."""
    return sum(a.get(name, 0.0) - b.get(name, 0.0) for a, b in zip(after, before, strict=True))


def cpu_table(runs: Sequence[Run]) -> list[str]:
    """Markdown: rate and CPU ms per image by stage, one row per model-free run; then the CPU every process of
    the stack spent per image, and the rate the machine's cores allow at that cost."""
    servers = list(runs[0].server_cpu_s)
    head = ["run", "images/s", *STAGES, "other", "**outside decode+model**", *servers, "all processes", "cores allow"]
    head.append("re-checked")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        other = run.worker_cpu_s - sum(run.stage_cpu_s.values())
        everything = run.ms(run.worker_cpu_s + sum(run.server_cpu_s.values()))
        cells = [run.label, f"{run.rate:.1f}"]
        cells += [f"{run.ms(run.stage_cpu_s[s]):.1f}" for s in STAGES]
        cells += [f"{run.ms(other):.1f}", f"**{run.outside:.1f}**"]
        cells += [f"{run.ms(run.server_cpu_s[name]):.1f}" for name in servers]
        cells += [f"{everything:.1f}", f"{CORES * 1000 / everything:.0f}/s", f"{run.rechecked:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def synthetic_originals(start: int, count: int, dim: int = 2048) -> list[Signals]:
    """``count`` originals as the worker stores them, without images: random unit descriptors (none near another)
    and random unit embeddings; ids ``growth/<n>``. Index growth is measured on these: fingerprinting thousands of
    pictures would time the hash stage, not the index."""
    rng = np.random.default_rng(start)
    views = _unit(rng.standard_normal((count, 1 + BRIGHT, DESCRIPTOR_DIM)))
    vectors = _unit(rng.standard_normal((count, dim)))
    return [
        Signals(
            f"growth/{start + i:08d}",
            start + i,
            f"{start + i:064x}",
            views[i, 0],
            vectors[i],
            Look(views[i, 1:], information=12.0, split=0.2, texture=0.5, colour=bytes(48)),
        )
        for i in range(count)
    ]


def _unit(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = (values / np.linalg.norm(values, axis=-1, keepdims=True)).astype(np.float32)
    return out


def index_growth(
    stack: LocalStack, name: str, originals: int, batch_size: int, engine: Mapping[str, str] | None, steps: int = 6
) -> list[tuple[int, float]]:
    """A fresh Milvus Lite server (``engine``: its settings, as :meth:`LocalStack.start_milvus`), filled with
    ``originals`` batch by batch the way the worker does it (search with the default thresholds, then store):
    ``(originals stored, the server's CPU ms per image over the last step)``, ``steps`` times."""
    from worker.index import Index

    server, uri = stack.start_milvus(name, engine=engine)
    index = Index.connect(uri, collection="growth")
    within = Thresholds(perceptual=DEFAULT_PERCEPTUAL_THRESHOLD, semantic=None)
    step = max(batch_size, originals // steps // batch_size * batch_size)
    points: list[tuple[int, float]] = []
    try:
        stored = 0
        while stored + step <= originals:
            before = cpu_seconds(server)
            for first in range(stored, stored + step, batch_size):
                batch = synthetic_originals(first, batch_size)
                index.neighbours(batch, within=within)
                index.store(batch)
            stored += step
            points.append((stored, (cpu_seconds(server) - before) / step * 1000))
    finally:
        index.close()
        stack.stop_service(server)
    return points


def growth_table(curves: Mapping[str, Sequence[tuple[int, float]]]) -> list[str]:
    """Markdown: one row per step, one column of server CPU ms per image per engine setting."""
    names = list(curves)
    lines = ["| originals stored | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in zip(*curves.values(), strict=True):
        lines.append(f"| {row[0][0]:,} | " + " | ".join(f"{ms:.1f}" for _, ms in row) + " |")
    return lines


def model_free(bench: Bench, small: list[bytes], processes: list[int], camera: int, profile: Path | None) -> list[Run]:
    """The model-free runs: small images with each number of worker processes, then 12 MP camera JPEGs."""
    typer.echo("\nmodel-free (DEDUP_MODEL_WEIGHTS=noop):")
    runs: list[Run] = []
    ceilings: dict[int, float] = {}
    for i, n in enumerate(processes):
        label = f"no model, {len(small)} small, {n} process{'es' if n > 1 else ''}"
        run = bench.run(label, small, weights="noop", processes=n, profile=profile if i == 0 else None)
        runs.append(run)
        ceilings[n] = run.rate
        typer.echo(f"  {run.label:<40} {run.rate:8.1f} images/s")
    for n, rate in ceilings.items():
        if n > 1 and 1 in ceilings:
            typer.echo(f"  scaling {n} processes / 1: {rate / ceilings[1]:.2f}")
    for progressive in (False, True) if camera else ():
        kind = "progressive" if progressive else "baseline"
        data = make_camera_images(camera, progressive=progressive)
        mean = sum(map(len, data)) / len(data) / 2**20
        run = bench.run(f"no model, {camera} × 12 MP {kind} ({mean:.1f} MB)", data, weights="noop")
        runs.append(run)
        typer.echo(f"  {run.label:<40} {run.rate:8.1f} images/s")
    if profile:
        typer.echo(f"  py-spy profile of the first: {profile} (https://www.speedscope.app)")
    return runs


def perceptual_only(bench: Bench, images: list[bytes], resnet: Run | None) -> Run:
    """The end-to-end run without a model (``DEDUP_MODEL_WEIGHTS=none``), one worker process, beside the ResNet-50
    one (``resnet``; None: not run)."""
    run = bench.run(f"perceptual-only, {len(images)} small, 1 process", images, weights=NO_MODEL)
    typer.echo(
        f"perceptual-only {run.rate:7.1f} images/s   (DEDUP_MODEL_WEIGHTS={NO_MODEL}, one process: S3 → decode → hash "
        "→ Milvus → decide → tag; no model, no embeddings)"
    )
    if resnet is not None:
        typer.echo(
            f"per process    {run.rate:8.1f} images/s perceptual-only, {resnet.rate:.1f} with ResNet-50: "
            f"{run.rate / resnet.rate:.1f} ×; worker CPU per image {run.ms(run.worker_cpu_s):.1f} ms against "
            f"{resnet.ms(resnet.worker_cpu_s):.1f} ms"
        )
    return run


@cli.command()
def main(
    # 384, not 192: filling the pipeline before the first model batch and draining it after the last are fixed
    # costs of a run, which a worker under a backlog does not pay per image (the ratio was 0.71 at 192, 0.77 at 384)
    images: Annotated[int, typer.Option(min=8, help="How many small images")] = 384,
    batch_size: Annotated[int, typer.Option(min=1, help="DEDUP_BATCH_SIZE for every run")] = 32,
    weights: Annotated[str, typer.Option(help="random (default), imagenet or a file: speed is the same")] = "random",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
    processes: Annotated[str, typer.Option(help="worker processes of the model-free runs, e.g. 1,2")] = "1,2",
    # 96, not 24: a 12 MP decode takes 30 ms, so batches fill slowly and a short run is mostly filling and draining
    # (outside decoding and the model: 19.4 ms an image at 24, 16.5 at 96)
    camera: Annotated[int, typer.Option(min=0, help="12 MP JPEGs per camera run (0: none)")] = 96,
    skip_model: Annotated[
        bool, typer.Option(help="only the model-free runs (perceptual-only among them) and the S3 ceiling")
    ] = False,
    profile: Annotated[Path | None, typer.Option(help="py-spy the first model-free worker into this file")] = None,
    growth: Annotated[
        int,
        typer.Option(
            min=0,
            help="also fill a fresh Milvus Lite server with this many synthetic originals, with this service's Lite "
            "settings and with the engine's defaults, and report its CPU per image as it grows (0: skip)",
        ),
    ] = 0,
    compile_mode: Annotated[
        str,
        typer.Option(
            "--compile",
            help="also time the model alone compiled with this torch.compile mode (default, reduce-overhead: CUDA "
            "graphs on a GPU, max-autotune), and run end to end with DEDUP_COMPILE_MODE set to it",
        ),
    ] = "",
) -> None:
    """Measure end-to-end throughput against the model alone, and the model-free ceiling, in one run."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # the S3 ceiling's 16 threads outgrow the pool
    counts = [int(n) for n in processes.split(",") if n.strip()]
    small = make_images(images)
    free = make_images(2 * images, seed=8)  # the model-free runs are fast: more images, steadier figures
    typer.echo(f"{images} JPEGs (≤640 px, {sum(map(len, small)) / len(small) / 1024:.0f} KiB mean), batch {batch_size}")
    model_rate = 0.0
    if not skip_model:
        model_rate, where = model_only(small, batch_size, weights, device)
        typer.echo(f"model only     {model_rate:8.1f} images/s   (ResNet-50 on {where})")
        if compile_mode:
            compiled, _ = model_only(small, batch_size, weights, device, compile_mode)
            typer.echo(f"model only     {compiled:8.1f} images/s   (torch.compile, mode={compile_mode})")
            model_rate = compiled  # the end-to-end run compiles too (DEDUP_COMPILE_MODE)
    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp, LocalStack(Path(tmp), buckets=(BUCKET,)) as stack:
        milvus, uri = stack.start_milvus()
        bench = Bench(stack, milvus, uri, batch_size, device)
        e2e: Run | None = None
        if not skip_model:
            e2e = bench.run("end to end, ResNet-50", small, weights=weights, compile_mode=compile_mode)
            typer.echo(
                f"end to end     {e2e.rate:8.1f} images/s   (S3 → decode → hash → embed → Milvus → decide → tag)"
            )
            typer.echo(f"ratio          {e2e.rate / model_rate:8.2f}   end-to-end / model-only")
            if e2e.embed_batches:
                typer.echo(f"mean embed batch {e2e.embedded / e2e.embed_batches:.1f} over {e2e.embed_batches:.0f}")
            servers = ", ".join(f"{name} {e2e.ms(cpu):.1f}" for name, cpu in e2e.server_cpu_s.items())
            typer.echo(f"servers' CPU per image meanwhile (ms): {servers}; the model's threads use the rest")
        only = perceptual_only(bench, small, e2e)
        runs = [only, *model_free(bench, free, counts, camera, profile)]
        s3_rate = bench.s3_ceiling()
        server = stack.s3_server
        engines: list[tuple[str, Mapping[str, str] | None]] = [
            (f"{lite.MEMTABLE_ENV}={lite.MEMTABLE_BYTES} (this service)", None),
            ("engine defaults", {}),
        ]
        curves = {
            label: index_growth(stack, f"milvus-growth-{i}", growth, batch_size, engine)
            for i, (label, engine) in enumerate(engines if growth else [])
        }
    if curves:
        typer.echo("\nMilvus Lite server CPU per image (ms) as the collection grows (search, then store, per batch):\n")
        for line in growth_table(curves):
            typer.echo(line)
    if runs:
        typer.echo(
            f"\nmodel-free: worker CPU per image by stage (ms), the servers' (ms), and what {CORES} cores allow when"
            " every process of the stack shares them:\n"
        )
        for line in cpu_table(runs):
            typer.echo(line)
    bound = s3_rate / S3_REQUESTS_PER_IMAGE
    typer.echo(
        f"\nS3 server ({server}) alone: {s3_rate:.0f} requests/s (16 threads reading tags); the worker makes "
        f"{S3_REQUESTS_PER_IMAGE} per image, so this S3 server bounds any run at ≈ {bound:.0f} images/s."
    )


if __name__ == "__main__":
    cli()
