"""A bounded burst of MinIO notifications through the webhook, from a load generator on loopback: 10,000 with
``make load``; ``make test`` sends 1,000 (``LOAD_EVENTS``), because on two cores the S3 server of the
tests (moto) takes ~35 requests/s and every event costs a download and a tag write.

The uploads are exact copies of a few small photos, decided after their originals: an exact copy of an indexed
original skips the model (dedup_embeddings_skipped_total), so the CPU-bound ResNet-50 does not dominate and the
test measures the plumbing — webhook, Redis, Celery, S3, Milvus. Reported: the webhook's events/s and the
worker's drain rate (``pytest -s`` prints them; they are also recorded as test properties).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from producer.events import notification
from tests.deployment import AUTH, deploy
from tests.helpers import BUCKET, next_time_ms
from tooling.localstack import LocalStack, wait_until
from tooling.samples import jpeg, photo, resized

pytestmark = pytest.mark.integration

EVENTS = int(os.environ.get("LOAD_EVENTS", "1000"))
CONCURRENCY = 32


async def blast(url: str, bodies: list[bytes]) -> tuple[float, list[int]]:
    """POST every body with ``CONCURRENCY`` requests in flight; returns the seconds taken and the statuses."""
    statuses: list[int] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(headers=AUTH, limits=limits, timeout=60) as client:

        async def sender() -> None:
            while not queue.empty():
                response = await client.post(url, content=queue.get_nowait())
                statuses.append(response.status_code)

        start = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
        return time.perf_counter() - start, statuses


def in_parallel(fn: Callable[[str], object], keys: list[str]) -> list[object]:
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(fn, keys))


def test_a_burst_of_events_is_taken_drained_and_counted_once(
    stack: LocalStack, tmp_path: Path, prefix: str, record_property: Callable[[str, object], None]
) -> None:
    with deploy(stack, tmp_path, db=10, env={"DEDUP_BATCH_SIZE": "32", "DEDUP_BATCH_WAIT_MS": "20"}) as d:
        images = {name: jpeg(resized(photo(name), 0.25)) for name in ("astronaut.png", "coffee.png", "camera.png")}
        originals = d.upload_bytes({f"{prefix}{name}.jpg": data for name, data in images.items()})
        d.deliver(originals)
        assert {o.status.value for o in d.outcomes(originals).values()} == {"unique"}
        d.wait_for_metric('sum(dedup_images_total{job="worker"})', len(images))  # a fresh deployment
        counted, skipped = len(images), 0  # originals go through the model

        names = list(images)
        copies = {f"{prefix}copies/{i:05d}.jpg": names[i % len(names)] for i in range(EVENTS)}
        storage = d.storage  # one client: a new one asks the bucket's location first
        etags = in_parallel(lambda key: storage.put(BUCKET, key, images[copies[key]]), list(copies))
        at = next_time_ms()
        bodies = [
            json.dumps(notification("s3:ObjectCreated:Put", BUCKET, key, event_time_ms=at, etag=str(etag))).encode()
            for key, etag in zip(copies, etags, strict=True)
        ]
        seconds, statuses = asyncio.run(blast(d.events_url, bodies))
        assert statuses.count(200) == EVENTS, {code: statuses.count(code) for code in set(statuses)}
        taken = time.perf_counter()
        wait_until(d.drained, 1200, "the queue to drain", interval=1)
        drained_s = time.perf_counter() - taken + seconds
        record_property("webhook_events_per_s", round(EVENTS / seconds))
        record_property("drain_events_per_s", round(EVENTS / drained_s))
        print(
            f"\nwebhook: {EVENTS} events in {seconds:.1f} s = {EVENTS / seconds:.0f}/s; "
            f"drained in {drained_s:.1f} s = {EVENTS / drained_s:.0f}/s"
        )

        d.wait_for_metric('sum(dedup_images_total{job="worker"})', counted + EVENTS, timeout=60)
        assert d.query('dedup_embeddings_skipped_total{job="worker"}') == skipped + EVENTS
        assert d.query('dedup_index_size{job="worker"}') == len(images)
        expected = {key: f"{BUCKET}/{prefix}{name}.jpg" for key, name in copies.items()}
        tags = dict(zip(copies, in_parallel(lambda key: storage.get_tags(BUCKET, key), list(copies)), strict=True))
        wrong = {
            k: t
            for k, t in tags.items()
            if t
            != {"dedup-status": "duplicate", "dedup-of": expected[k], "dedup-kind": "exact", "dedup-score": "1.0000"}
        }
        assert not wrong, (len(wrong), list(wrong.items())[:3])
        time.sleep(2)
        assert d.query('sum(dedup_images_total{job="worker"})') == counted + EVENTS  # nothing counted twice
