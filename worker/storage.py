"""The S3 adapter (MinIO or any S3): read objects and tags, write tags, copy, verify and delete.

Every call is keyword-only into the ``minio`` SDK (its next major version requires it) and every error is
translated: a missing object or version is :class:`ObjectMissingError` (permanent), everything else — connection
refused, timeouts, 5xx, throttling, denied credentials — is a :class:`~worker.errors.TransientError`, so the
task retries rather than losing the object.

    >>> storage = Storage.connect("localhost:9000", "minioadmin", "minioadmin", max_bytes=50 << 20)
    >>> blob = storage.fetch("photos", "cat.jpg")
    >>> storage.set_tags("photos", "cat.jpg", {"dedup-status": "unique"})
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, REPLACE, CopySource, Tags
from minio.error import S3Error
from minio.versioningconfig import VersioningConfig
from urllib3 import BaseHTTPResponse

from worker.errors import PermanentError, TransientError

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket"})
#: On a copy, NoSuchBucket may mean the *destination* is missing: only a missing source key is permanent.
COPY_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion"})
_CHUNK = 1 << 20


class ObjectMissingError(PermanentError):
    """The object (or the version asked for) does not exist."""

    def __init__(self, detail: str) -> None:
        super().__init__("not_found", detail)


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    etag: str
    version_id: str | None
    last_modified_ms: int | None = None  # from Last-Modified: whole seconds


@dataclass(frozen=True, slots=True)
class Info:
    size: int
    etag: str
    version_id: str | None
    metadata: dict[str, str]
    last_modified: datetime | None


def make_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    secure: bool = False,
    region: str | None = None,
    pool_size: int = 10,
    timeout_s: float = 30.0,
) -> Minio:
    """A MinIO client with bounded timeouts and a connection pool sized for the worker's threads.

    ``endpoint`` is ``host:port`` or a URL; a URL's scheme decides TLS.
    """
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        endpoint, secure = parts.netloc, parts.scheme == "https"
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(5.0, timeout_s), read=timeout_s),
        maxsize=pool_size,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=http)


class Storage:
    def __init__(self, client: Minio, *, max_bytes: int) -> None:
        self.client = client
        self.max_bytes = max_bytes

    # Reads ----------------------------------------------------------------------------------------------------

    def fetch(self, bucket: str, key: str, version_id: str | None = None) -> Blob:
        """The object's bytes. Raises ``ObjectMissingError``, ``PermanentError('too_large')`` or TransientError."""
        with self._open(bucket, key, version_id) as response:
            declared = int(response.headers.get("Content-Length") or -1)
            if declared > self.max_bytes:
                raise PermanentError("too_large", f"{declared} bytes is over the limit of {self.max_bytes}")
            # A declared length within the limit is read in one go (a bounded read copies chunk by chunk: a third
            # more CPU for a 3 MB photo); without one, at most one byte past the limit is read.
            data = response.read() if declared >= 0 else response.read(self.max_bytes + 1)
            if len(data) > self.max_bytes:
                raise PermanentError("too_large", f"over the limit of {self.max_bytes} bytes")
            etag = (response.headers.get("ETag") or "").strip('"')
            version = response.headers.get("x-amz-version-id") or version_id
            return Blob(data, etag, version, _http_time_ms(response.headers.get("Last-Modified")))

    def stat(self, bucket: str, key: str, version_id: str | None = None) -> Info | None:
        """The object's size, ETag and user metadata, or None if it does not exist."""
        try:
            with _translated(f"{bucket}/{key}"):
                st = self.client.stat_object(bucket_name=bucket, object_name=key, version_id=version_id)
        except ObjectMissingError:
            return None
        metadata = {
            name.lower().removeprefix("x-amz-meta-"): value
            for name, value in (st.metadata or {}).items()
            if name.lower().startswith("x-amz-meta-")
        }
        return Info(st.size or 0, (st.etag or "").strip('"'), st.version_id, metadata, st.last_modified)

    def sha256(self, bucket: str, key: str, version_id: str | None = None) -> str:
        """SHA-256 of the object's bytes, streamed (used to verify a copy before deleting its source)."""
        digest = hashlib.sha256()
        with self._open(bucket, key, version_id) as response:
            for chunk in response.stream(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    @contextmanager
    def _open(self, bucket: str, key: str, version_id: str | None) -> Iterator[BaseHTTPResponse]:
        """A GET response, errors translated, always closed and its connection released back to the pool."""
        with _translated(f"{bucket}/{key}"):
            response = self.client.get_object(bucket_name=bucket, object_name=key, version_id=version_id)
            try:
                yield response
            finally:
                response.close()
                response.release_conn()

    def get_tags(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        with _translated(f"{bucket}/{key}"):
            tags = self.client.get_object_tags(bucket_name=bucket, object_name=key, version_id=version_id)
        return dict(tags or {})

    # Writes ---------------------------------------------------------------------------------------------------

    def set_tags(self, bucket: str, key: str, tags: Mapping[str, str], version_id: str | None = None) -> None:
        """Replace the object's whole tag set (merge first: S3 has no partial update)."""
        with _translated(f"{bucket}/{key}"):
            if tags:
                self.client.set_object_tags(
                    bucket_name=bucket, object_name=key, tags=_to_tags(tags), version_id=version_id
                )
            else:
                self.client.delete_object_tags(bucket_name=bucket, object_name=key, version_id=version_id)

    def copy(
        self,
        *,
        source_bucket: str,
        source_key: str,
        bucket: str,
        key: str,
        metadata: Mapping[str, str],
        tags: Mapping[str, str],
        version_id: str | None = None,
        match_etag: str | None = None,
    ) -> str | None:
        """Server-side copy with new metadata and tags, only if the source still has ``match_etag``; returns the
        copy's version id (None in an unversioned bucket)."""
        source = CopySource(
            bucket_name=source_bucket, object_name=source_key, version_id=version_id, match_etag=match_etag
        )
        with _translated(f"{source_bucket}/{source_key} -> {bucket}/{key}", missing=COPY_MISSING_CODES):
            result = self.client.copy_object(
                bucket_name=bucket,
                object_name=key,
                source=source,
                metadata={f"x-amz-meta-{k}": v for k, v in metadata.items()},
                metadata_directive=REPLACE,
                tags=_to_tags(tags) if tags else None,
                tagging_directive=REPLACE if tags else None,
            )
        return result.version_id or None

    def versions(self, bucket: str, key: str, limit: int = 20) -> list[str]:
        """Version ids of exactly ``key``, newest first (at most ``limit``)."""
        found: list[str] = []
        with _translated(f"{bucket}/{key}"):
            for obj in self.client.list_objects(bucket_name=bucket, prefix=key, include_version=True):
                if obj.object_name == key and obj.version_id and not obj.is_delete_marker:
                    found.append(obj.version_id)
                    if len(found) >= limit:
                        break
        return found

    def remove(self, bucket: str, key: str, version_id: str | None = None) -> None:
        with _translated(f"{bucket}/{key}"):
            self.client.remove_object(bucket_name=bucket, object_name=key, version_id=version_id)

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Upload bytes; returns the ETag. (Used by the demo, benchmark and tests.)"""
        with _translated(f"{bucket}/{key}"):
            result = self.client.put_object(
                bucket_name=bucket,
                object_name=key,
                data=io.BytesIO(data),
                length=len(data),
                content_type=content_type,
            )
        return str(result.etag).strip('"')

    def ensure_bucket(self, bucket: str, *, versioned: bool = False) -> None:
        """Create the bucket if missing; with ``versioned``, turn versioning on (an overwrite then keeps the old
        object as a non-current version)."""
        with _translated(bucket):
            if not self.client.bucket_exists(bucket_name=bucket):
                try:
                    self.client.make_bucket(bucket_name=bucket)
                except S3Error as exc:
                    if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise
            if versioned and self.client.get_bucket_versioning(bucket_name=bucket).status != ENABLED:
                self.client.set_bucket_versioning(bucket_name=bucket, config=VersioningConfig(ENABLED))


def _http_time_ms(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def _to_tags(values: Mapping[str, str]) -> Tags:
    tags = Tags.new_object_tags()
    for name, value in values.items():
        tags[name] = value
    return tags


@contextmanager
def _translated(what: str, missing: frozenset[str] = MISSING_CODES) -> Iterator[None]:
    try:
        yield
    except PermanentError:
        raise
    except S3Error as exc:
        if exc.code in missing:
            raise ObjectMissingError(f"{what}: {exc.code}") from exc
        raise TransientError("s3", f"{what}: {exc.code}: {exc.message}") from exc
    except ValueError:
        raise  # our own bad argument (e.g. an invalid tag): a bug, not an outage
    except Exception as exc:  # urllib3 / minio connection and protocol errors
        raise TransientError("s3", f"{what}: {type(exc).__name__}: {exc}") from exc
