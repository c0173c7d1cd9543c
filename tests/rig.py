"""An in-process pipeline on real components (S3 server, Milvus Lite, the model), for pipeline and runtime
tests: what the worker does around the decision core, without a queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tests.helpers import BUCKET, next_time_ms
from tooling.localstack import LocalStack
from worker.config import load_settings
from worker.decision import Vector
from worker.embedding import Embedder
from worker.index import Index
from worker.messages import ObjectEvent
from worker.pipeline import Pipeline
from worker.storage import Storage
from worker.stores import Stores


class Rig:
    """A pipeline plus what it sent back for a new decision (the queue, in-process)."""

    def __init__(self, pipeline: Pipeline, storage: Storage, sent_back: list[ObjectEvent]) -> None:
        self.pipeline = pipeline
        self.storage = storage
        self.sent_back = sent_back

    def upload(self, key: str, data: bytes, event_time_ms: int | None = None) -> ObjectEvent:
        etag = self.storage.put(BUCKET, key, data, "image/jpeg")
        return ObjectEvent(BUCKET, key, event_time_ms or next_time_ms(), etag=etag, size=len(data))

    def tags(self, key: str) -> dict[str, str]:
        return self.storage.get_tags(BUCKET, key)


class SameEmbedding(Embedder):
    """Stands in for real weights that find two different pictures alike: every picture gets the same unit
    vector (cosine 1.0), so a pair that matches on nothing else is a semantic-only match."""

    def __init__(self) -> None:  # no backbone: the pipeline needs only ``device`` and ``embed``
        self.device = torch.device("cpu")
        self.padded_to = 0

    def embed(self, images: Sequence[torch.Tensor]) -> Vector:
        vector = np.zeros(2048, dtype=np.float32)
        vector[0] = 1.0
        return np.tile(vector, (len(images), 1))


def build(
    stack: LocalStack,
    index: Index,
    embedder: Embedder | None,
    *,
    storage: Storage | None = None,
    stores: Stores | None = None,
    **overrides: Any,
) -> Rig:
    defaults = {"quarantine_bucket": "quarantine", "batch_size": 8, "batch_wait_ms": 20, "model_weights": "random"}
    settings = load_settings(buckets=(BUCKET,), **{**defaults, **overrides})
    stack.storage().ensure_bucket(settings.quarantine_bucket, versioned=True)
    storage = storage or stack.storage()
    sent_back: list[ObjectEvent] = []
    pipeline = Pipeline(
        settings,
        storage=storage,
        index=index,
        embedder=embedder,
        redecide=sent_back.append,
        stores=stores,
    )
    return Rig(pipeline, storage, sent_back)


def store_count(stack: LocalStack, collection: str) -> Stores:
    """The store count of ``collection`` in the stack's broker Redis, as the workers keep it."""
    return Stores(stack.redis(), collection)
