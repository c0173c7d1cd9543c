"""One connection to Milvus, shared by the modules of each collection (:mod:`worker.originals`,
:mod:`worker.hash_rows`, :mod:`worker.links`, :mod:`worker.verdicts`), and what they have in common.

The same code serves Milvus Lite (``DEDUP_MILVUS_URI=data/milvus-lite.db``, one process per file) and a Milvus
server or cluster (``http://host:19530``). Every read is Strong-consistent: the decision must see what the
previous batch stored. Every call goes through :meth:`Milvus.call`, one request at a time, which turns client
errors into :class:`~worker.errors.TransientError` (so tasks retry) and loads the collections again when a
restarted server answers "not loaded".

    >>> milvus = Milvus.connect("data/milvus-lite.db", reload=("image_dedup", "image_dedup_links"))
    >>> milvus.query_in("image_dedup", "sha256", digests, ["id", "event_time_ms"])
    >>> milvus.upsert("image_dedup_links", rows)
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pymilvus import MilvusClient

from worker import lite
from worker.config import env_name
from worker.errors import TransientError

log = logging.getLogger(__name__)

ID_MAX_BYTES = 2048  # bucket (≤63) + "/" + key (≤1024 UTF-8 bytes), with room to spare
HNSW = {"M": 16, "efConstruction": 200}
STRONG = "Strong"
#: Hits asked for first when the caller says what is close enough to count (``counts``): a query whose last one
#: still counts is asked again for the full limit. Most hashes have no stored row near them, so most of the rows a
#: full search returns (and Milvus Lite materialises, and pymilvus parses hit by hit) are never used.
FIRST_HITS = 4
#: The dimension of the constant vector that collections of scalar rows (links, verdicts) carry: Milvus wants one
#: vector field per collection.
UNUSED_DIM = 2
#: What to do when a Milvus Lite file will not open: most often another process holds it.
LITE_SHARED = (
    "a Milvus Lite file serves one process; if another worker holds it, run several workers against one Milvus: "
    f"`{lite.MEMTABLE_ENV}={lite.MEMTABLE_BYTES} milvus-lite server --data-dir DIR --port 19530` (or a Milvus "
    "server) and "
    f"{env_name('milvus_uri')}=http://127.0.0.1:19530 for all of them"
)

R = TypeVar("R")


class IndexSchemaError(RuntimeError):
    """The existing collection does not have the layout this version expects."""


def milvus_literal(value: str) -> str:
    """A string as a Milvus expression literal (double-quoted, JSON escapes)."""
    return json.dumps(value, ensure_ascii=False)


def milvus_literal_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(milvus_literal(v) for v in values) + "]"


def unused_vector() -> list[float]:
    """The constant vector companion rows carry (Milvus wants one vector field per collection)."""
    return [0.0] * UNUSED_DIM


class Milvus:
    """A Milvus client, one request at a time; ``reload`` names the collections to load again after a restart."""

    def __init__(self, client: MilvusClient, *, reload: Sequence[str] = ()) -> None:
        self.client = client
        self.reload = tuple(reload)
        self._lock = threading.Lock()  # one request at a time per client: Lite's local server is single-file
        self._scalar_index: str | None = None

    @classmethod
    def connect(cls, uri: str, *, token: str = "", reload: Sequence[str] = ()) -> Milvus:
        """A client of ``uri`` (for Milvus Lite, its folder is created and the embedded engine tuned first)."""
        if uri.endswith(".db"):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            lite.tune_embedded()  # the engine starts in this process and reads its settings once
        try:
            client = MilvusClient(uri=uri, token=token)
        except Exception as exc:
            hint = f"; {LITE_SHARED}" if uri.endswith(".db") else ""
            raise TransientError("milvus", f"cannot connect to {uri}: {exc}{hint}") from exc
        return cls(client, reload=reload)

    def close(self) -> None:
        with self._lock:
            self.client.close()

    def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` (a method of :attr:`client`), alone; a client error becomes a
        :class:`TransientError`."""
        with self._lock:
            try:
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    if not _not_loaded(exc):
                        raise
                    # A restarted Milvus Lite (or a released collection) answers "load() first": load, go on.
                    log.warning("Milvus collections not loaded (restarted?); loading them again")
                    for name in self.reload:
                        self.client.load_collection(name)
                    return fn(*args, **kwargs)
            except Exception as exc:
                raise TransientError("milvus", f"{getattr(fn, '__name__', fn)}: {exc}") from exc

    # Layout ---------------------------------------------------------------------------------------------------

    def has(self, collection: str) -> bool:
        return bool(self.call(self.client.has_collection, collection))

    def fields(self, collection: str) -> list[dict[str, Any]]:
        """The collection's fields as Milvus describes them (``name``, ``params``…)."""
        described = self.call(self.client.describe_collection, collection)
        return list(described["fields"])

    def create_if_missing(self, name: str, schema: Any, params: Any) -> None:
        """Create the collection (Strong consistency) unless it exists, then load it."""
        if not self.has(name):
            try:
                self.call(
                    self.client.create_collection, name, schema=schema, index_params=params, consistency_level=STRONG
                )
                log.info("created Milvus collection %s", name)
            except TransientError:
                if not self.has(name):  # lost a creation race?
                    raise
        self.call(self.client.load_collection, name)

    def engine(self) -> str:
        """The server's version string: ``milvus_lite-3.2.2`` for Milvus Lite, embedded or a server."""
        return str(self.call(self.client.get_server_version))

    @property
    def scalar_index(self) -> str:
        """The index type for a text field that filters look up (an original's key or digest):
        :func:`scalar_index_of` the server's version, asked once."""
        if self._scalar_index is None:
            self._scalar_index = scalar_index_of(self.engine())
        return self._scalar_index

    # Reads ----------------------------------------------------------------------------------------------------

    def query(self, collection: str, expression: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        """Rows of ``collection`` matching ``expression`` (Strong)."""
        rows: list[dict[str, Any]] = self.call(
            self.client.query, collection, filter=expression, output_fields=list(fields), consistency_level=STRONG
        )
        return rows

    def query_in(self, collection: str, field: str, values: Iterable[str], output: list[str]) -> list[dict[str, Any]]:
        """Rows whose ``field`` is one of ``values`` (Strong)."""
        wanted = sorted(set(values))
        if not wanted:
            return []
        return self.query(collection, f"{field} in {milvus_literal_list(wanted)}", output)

    def search(
        self,
        collection: str,
        field: str,
        vectors: list[list[float]],
        output: list[str],
        where: str,
        *,
        limit: int,
        counts: Callable[[float], bool] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """The ``limit`` nearest rows of each query. With ``counts`` (whether a hit's distance can take part in a
        decision), only :data:`FIRST_HITS` first, then ``limit`` for the queries whose last hit still counts: the
        hits that count are the same, the rest may be left out."""
        if counts is None or limit <= FIRST_HITS:
            return self._nearest(collection, field, vectors, output, where, limit, ef=limit)
        found = self._nearest(collection, field, vectors, output, where, FIRST_HITS, ef=limit)
        crowded = [i for i, hits in enumerate(found) if len(hits) == FIRST_HITS and counts(hits[-1]["distance"])]
        if crowded:
            more = self._nearest(collection, field, [vectors[i] for i in crowded], output, where, limit, ef=limit)
            for i, hits in zip(crowded, more, strict=True):
                found[i] = hits
        return found

    def _nearest(
        self,
        collection: str,
        field: str,
        vectors: list[list[float]],
        output: list[str],
        where: str,
        limit: int,
        ef: int,
    ) -> list[list[dict[str, Any]]]:
        result = self.call(
            self.client.search,
            collection,
            data=vectors,
            anns_field=field,
            filter=where,
            limit=limit,
            output_fields=output,
            # The same ef whatever the limit: the first hits of a FIRST_HITS search are those of a full one.
            search_params={"params": {"ef": max(64, ef)}},
            consistency_level=STRONG,
        )
        return [list(hits) for hits in result]

    # Writes ---------------------------------------------------------------------------------------------------

    def upsert(self, collection: str, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert rows (nothing to do for none)."""
        if rows:
            self.call(self.client.upsert, collection, list(rows))

    def delete_ids(self, collection: str, ids: Iterable[str]) -> None:
        """Delete the rows with these ids, whatever their time."""
        wanted = sorted(set(ids))
        if wanted:
            self.call(self.client.delete, collection, filter=f"id in {milvus_literal_list(wanted)}")

    def delete_guarded(self, collection: str, rows: Iterable[tuple[str, int]], key: str = "id") -> None:
        """Delete the rows of ``(key, event_time_ms)`` unless a newer version of that key was stored since."""
        clauses = [f"({key} == {milvus_literal(i)} and event_time_ms <= {int(t)})" for i, t in rows]
        if clauses:
            self.call(self.client.delete, collection, filter=" or ".join(clauses))


def scalar_index_of(version: str) -> str:
    """``INVERTED`` (Milvus Lite, Milvus 2.4 and later); ``Trie`` on a Milvus 2.3 server, which has no inverted
    index (PyPI's ``milvus`` 2.3.5, an embedded standalone server, answers ``v2.3.5-lite``).

        >>> scalar_index_of("milvus_lite-3.2.2"), scalar_index_of("v2.5.4"), scalar_index_of("v2.3.5-lite")
        ('INVERTED', 'INVERTED', 'Trie')
    """
    release = re.match(r"v?(\d+)\.(\d+)", version)
    if release is not None and (int(release[1]), int(release[2])) < (2, 4):
        return "Trie"
    return "INVERTED"


def _not_loaded(exc: Exception) -> bool:
    """Milvus' "collection not loaded" error (code 101), which a restarted server gives until load()."""
    message = str(exc).lower()
    return getattr(exc, "code", None) == 101 or "call load()" in message or "not loaded" in message
