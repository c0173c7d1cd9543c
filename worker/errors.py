"""The two ways processing an object can fail.

* :class:`PermanentError` — retrying cannot help (undecodable bytes, object gone, too large). The object gets
  an ``error`` outcome carrying ``reason``, a short stable code used as tag value and metric label.
* :class:`TransientError` — a dependency blinked (S3, Milvus or Redis unreachable, a timeout). The task is
  retried with backoff and only dead-lettered when the retries run out.
"""

from __future__ import annotations


class PermanentError(Exception):
    """Processing this object can never succeed. ``reason`` is a short code such as ``undecodable``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TransientError(Exception):
    """A dependency failed in a way that may pass; ``reason`` names it (``s3``, ``milvus``, ``timeout``...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
