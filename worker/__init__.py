"""image-dedup-worker: finds duplicate images as they are uploaded to MinIO / S3, and tags or quarantines them.

Start a worker with::

    celery -A worker worker

``worker.app`` is created on first access, from ``DEDUP_*`` environment variables, so that importing a
submodule (``worker.decision``, ``worker.config``...) needs no configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.celery_app import DedupCelery

__all__ = ["app"]


def __getattr__(name: str) -> DedupCelery:
    if name == "app":
        from worker.celery_app import app_from_environment

        app = app_from_environment()
        globals()["app"] = app
        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
