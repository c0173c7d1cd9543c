"""The Milvus index: the collections of one ``DEDUP_COLLECTION``, composed for the pipeline.

==========================  =====================================  ===========================================
collection                  module                                 holds
==========================  =====================================  ===========================================
``<collection>``            :mod:`worker.originals`                the originals, with all three signals
                                                                   (perceptual-only: no embeddings)
``<collection>_hashes``     :mod:`worker.hash_rows`                every stored descriptor of an original
``<collection>_links``      :mod:`worker.links`                    each duplicate's link to its original
``<collection>_reviews``    :mod:`worker.verdicts`                 what people decided on review
==========================  =====================================  ===========================================

Each module has its collection's schema, layout check and queries; they share one connection
(:mod:`worker.milvus`: one request at a time, Strong reads, client errors become
:class:`~worker.errors.TransientError` so tasks retry). :class:`Index` opens them together and answers the
pipeline's questions that span collections: :meth:`Index.neighbours` (exact, perceptual and semantic lookups in
one), :meth:`Index.store` and :meth:`Index.discard` (an original and its hash rows).

The same code serves Milvus Lite (``DEDUP_MILVUS_URI=data/milvus-lite.db``, one process per file) and a Milvus
server or cluster (``http://host:19530``).

    >>> index = Index.connect("data/milvus-lite.db", collection="image_dedup")  # dim=None: perceptual-only
    >>> found = index.neighbours(batch)           # {id: [Neighbour, ...]}
    >>> index.store(originals); index.discard(duplicates)

A links collection of the older layout stops the worker at start with :class:`IndexSchemaError`, which names the
migration: ``python -m producer migrate-links``; a collection made by an earlier version says how to re-index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pymilvus import MilvusClient

from worker import verdicts
from worker.config import EMBEDDING_DIM
from worker.decision import Neighbour, Signals, Thresholds
from worker.hash_rows import HashRows, rows_of
from worker.links import LINK_FIELDS, MIGRATE_LINKS, SUGGEST, Link, Links, links_collection
from worker.milvus import FIRST_HITS, IndexSchemaError, Milvus, milvus_literal, milvus_literal_list
from worker.originals import Originals, neighbour, reindex_error

__all__ = [
    "FIRST_HITS",
    "LINK_FIELDS",
    "MIGRATE_LINKS",
    "SUGGEST",
    "Index",
    "IndexSchemaError",
    "Link",
    "milvus_literal",
    "milvus_literal_list",
]


class Index:
    """``dim``: the embeddings' width (``Settings.embedding_dim``); None: perceptual-only, no embeddings stored or
    searched (:mod:`worker.originals`)."""

    def __init__(
        self, client: MilvusClient, collection: str, *, search_limit: int = 10, dim: int | None = EMBEDDING_DIM
    ) -> None:
        self.collection = collection
        self.search_limit = search_limit
        self.dim = dim
        self.milvus = Milvus(client, reload=(collection, *self.companions))
        self.originals = Originals(self.milvus, collection, dim=dim, search_limit=search_limit)
        self.hash_rows = HashRows(self.milvus, self.hashes_collection, search_limit=search_limit)
        self.link_rows = Links(self.milvus, self.links_collection)

    @classmethod
    def connect(
        cls, uri: str, *, collection: str, token: str = "", search_limit: int = 10, dim: int | None = EMBEDDING_DIM
    ) -> Index:
        """Open the collections, creating them (and, for Milvus Lite, its folder) when missing."""
        client = Milvus.connect(uri, token=token).client
        index = cls(client, collection, search_limit=search_limit, dim=dim)
        try:
            index.ensure_collection()
        except BaseException:  # e.g. IndexSchemaError: let go of the (Lite) file for whoever fixes it
            index.close()
            raise
        return index

    def close(self) -> None:
        self.milvus.close()

    @property
    def _client(self) -> MilvusClient:
        """The client of the shared connection (tests record and inspect its calls)."""
        return self.milvus.client

    # Schema ---------------------------------------------------------------------------------------------------

    @property
    def links_collection(self) -> str:
        """The companion collection of duplicate → original links (``<collection>_links``, :mod:`worker.links`)."""
        return links_collection(self.collection)

    @property
    def hashes_collection(self) -> str:
        """The companion collection of every stored perceptual descriptor (``<collection>_hashes``,
        :mod:`worker.hash_rows`)."""
        return f"{self.collection}_hashes"

    @property
    def reviews_collection(self) -> str:
        """The companion collection of review verdicts (``<collection>_reviews``, see :mod:`worker.verdicts`)."""
        return verdicts.reviews_collection(self.collection)

    @property
    def companions(self) -> tuple[str, ...]:
        return (self.links_collection, self.hashes_collection, self.reviews_collection)

    def ensure_collection(self) -> None:
        """Create what is missing, in order, and refuse collections of another layout (:class:`IndexSchemaError`):
        originals, hash rows (an existing index without them was made by an earlier version), links, verdicts."""
        existed = self.originals.exists()
        self.originals.ensure()
        if existed and not self.hash_rows.exists():
            raise reindex_error(self.collection)
        self.hash_rows.ensure(self.collection)
        self.link_rows.ensure()
        verdicts.create(self.milvus, self.reviews_collection)

    # Reads ----------------------------------------------------------------------------------------------------

    def neighbours(self, batch: Sequence[Signals], within: Thresholds | None = None) -> dict[str, list[Neighbour]]:
        """The originals near each image of ``batch``: same SHA-256, nearest perceptual descriptors, nearest
        embeddings. A row found by several lookups is merged into one :class:`Neighbour`.

        The searches return ids only; one query then reads the fields of every original found. Asking each hit
        for its fields cost six times the client CPU (a batch of 32 images has 416 descriptor queries, 4,160
        hits).
        With ``within`` (the decision's thresholds), rows that could not match may be left out: each query asks
        for :data:`FIRST_HITS` rows, and for ``search_limit`` only when the last of those is still within its
        stage's threshold, so every row a full search would return within it is found."""
        if not batch:
            return {}
        measured: dict[str, dict[str, dict[str, Any]]] = {item.id: {} for item in batch}  # image → original → …
        # The batch's own rows (a re-delivery's, or the originals just stored when re-checking) are left out of
        # every lookup: the decision ignores them, and in the searches they would crowd out the rows it needs.
        own = {item.id for item in batch}
        others = milvus_literal_list(sorted(own))

        by_sha: dict[str, list[str]] = {}
        for row in self.originals.ids_by_sha256(item.sha256 for item in batch):
            if row["id"] not in own:
                by_sha.setdefault(row["sha256"], []).append(row["id"])
        for item in batch:
            for original in by_sha.get(item.sha256, []):
                measured[item.id].setdefault(original, {})

        self.hash_rows.perceptual(batch, measured, f"owner not in {others}", within)

        embedded = [item for item in batch if item.embedding is not None]
        if embedded and self.originals.semantic:  # perceptual-only: no embeddings stored, nothing to search
            vectors = [item.embedding.tolist() for item in embedded if item.embedding is not None]
            semantic = None if within is None else within.semantic
            counts = None if semantic is None else (lambda cosine: cosine >= semantic)
            hits = self.originals.nearest_embeddings(vectors, f"id not in {others}", counts)
            for item, found in zip(embedded, hits, strict=True):
                for hit in found:
                    measured[item.id].setdefault(str(hit["id"]), {})["cosine"] = float(hit["distance"])

        rows = self.originals.rows({original for per_image in measured.values() for original in per_image})
        return {
            item_id: [neighbour(rows[o], **m) for o, m in per_image.items() if o in rows]  # gone: skip
            for item_id, per_image in measured.items()
        }

    def engine(self) -> str:
        """The server's version string: ``milvus_lite-3.2.2`` for Milvus Lite, embedded or a server."""
        return self.milvus.engine()

    def count(self) -> int:
        return self.originals.count()

    def stored(self, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """The index's rows for these ids: ``{id: (sha256, event_time_ms)}``."""
        return self.originals.stored(ids)

    def exact(self, digests: Iterable[str]) -> dict[str, list[Neighbour]]:
        """The originals holding exactly the bytes with each of these SHA-256s, in one query:
        ``{sha256: [Neighbour, ...]}`` (digests no original has are absent)."""
        return self.originals.exact(digests)

    def event_times(self, ids: Iterable[str]) -> dict[str, int]:
        return {key: when for key, (_, when) in self.stored(ids).items()}

    def dependents(self, originals: Iterable[str]) -> dict[str, int]:
        """The duplicates linked to these originals: ``{duplicate id: event_time_ms}``."""
        return self.link_rows.dependents(originals)

    def links(self) -> list[dict[str, Any]]:
        """Every link row (:meth:`worker.links.Links.rows`)."""
        return self.link_rows.rows()

    def links_of(self, ids: Iterable[str]) -> dict[str, Link]:
        """The links of these duplicates: ``{id: Link}`` (ids that are no duplicate are absent)."""
        return self.link_rows.of(ids)

    def query(self, collection: str, expression: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        """Rows of one of this index's collections matching ``expression`` (Strong)."""
        return self.milvus.query(collection, expression, fields)

    def upsert(self, collection: str, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert rows into one of this index's collections."""
        self.milvus.upsert(collection, rows)

    # Writes ---------------------------------------------------------------------------------------------------

    def store(self, originals: Sequence[Signals]) -> None:
        """Upsert originals and their hash rows (idempotent: a redelivery rewrites the same rows)."""
        if not originals:
            return
        rows, hashes = [], []
        for item in originals:
            rows.append(self.originals.row(item))
            hashes += rows_of(item)
        # Descriptors first: a crash in between leaves descriptor rows whose original row is written by the
        # redelivery (the message is not acknowledged); the other order would leave an original no perceptual
        # search finds.
        self.hash_rows.upsert(hashes)
        self.originals.upsert(rows)

    def link(self, links: Iterable[Link | tuple[str, str, int]]) -> None:
        """Record each duplicate's :class:`Link` (:meth:`worker.links.Links.link`)."""
        self.link_rows.link(links)

    def unlink_now(self, ids: Iterable[str]) -> None:
        """Forget these duplicates' links whatever their time (a reviewer restored them: no longer duplicates)."""
        self.link_rows.unlink_now(ids)

    def unlink(self, rows: Iterable[tuple[str, int]]) -> None:
        """Forget the links of ``(id, event_time_ms)`` (originals now, or gone), unless a newer upload made them."""
        self.link_rows.unlink(rows)

    def discard(self, rows: Iterable[tuple[str, int]]) -> None:
        """Delete rows ``(id, event_time_ms)`` and their descriptors unless the index holds a newer version of that
        key (a stale event must not remove what a later upload stored)."""
        rows = list(rows)
        self.originals.discard(rows)
        self.hash_rows.discard(rows)
