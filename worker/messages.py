"""The task contract between producers and workers: task names and the payload they carry.

Producers send tasks by name (``app.send_task``), so they never import the worker's model code::

    >>> event = ObjectEvent("photos", "2024/cat.jpg", event_time_ms=1732350000000, etag="9b2cf535f27731c9")
    >>> event.id
    'photos/2024/cat.jpg'
    >>> ObjectEvent.from_kwargs(event.to_kwargs()) == event
    True

Payloads are JSON keyword arguments. Unknown keys are ignored so that a newer producer can talk to an older
worker during a rolling upgrade.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

PROCESS_TASK = "dedup.process"  # an object was created or overwritten: decide and act
REMOVE_TASK = "dedup.remove"  # an object was removed: drop it from the index


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    bucket: str
    key: str
    event_time_ms: int
    etag: str | None = None
    version_id: str | None = None
    size: int | None = None
    redecision: str | None = None  # set when the worker sends an object back to be decided again: the reason

    @property
    def id(self) -> str:
        """``bucket/key``: the object's identity in the index and in ``dedup-of`` tags."""
        return f"{self.bucket}/{self.key}"

    def to_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> ObjectEvent:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in known})

    @classmethod
    def from_id(cls, object_id: str, event_time_ms: int, redecision: str | None = None) -> ObjectEvent:
        bucket, key = split_id(object_id)
        return cls(bucket, key, event_time_ms, redecision=redecision)


def split_id(object_id: str) -> tuple[str, str]:
    """``"bucket/a/b.jpg"`` → ``("bucket", "a/b.jpg")`` (bucket names cannot contain ``/``)."""
    bucket, _, key = object_id.partition("/")
    return bucket, key
