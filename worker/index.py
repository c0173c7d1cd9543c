"""The Milvus adapter: one collection of originals, keyed by ``bucket/key``, with all three signals.

==============  ============================  ==========================================================
field           type                          used by
==============  ============================  ==========================================================
id              VARCHAR primary key           ``bucket/key``
sha256          VARCHAR(64), inverted index   exact stage: ``sha256 in [...]``
event_time_ms   INT64                         ordering; guards deletes against stale events
dct             FLOAT_VECTOR(64), HNSW, IP    the whole picture's perceptual descriptor (unit vector)
embedding       FLOAT_VECTOR(2048), HNSW,     semantic stage (unit vectors; COSINE returns similarity)
                COSINE
information,    FLOAT                         the guards (:class:`worker.decision.Guard`)
split, texture
colour          VARCHAR(96)                   colour check (hex of the colour layout)
==============  ============================  ==========================================================

The perceptual stage searches ``<collection>_hashes``: one row per stored descriptor of an original (the whole
picture, each region of :data:`worker.fingerprint.REGIONS` and the brightened picture when brightening changes
its descriptor; id ``bucket/key#variant``; ``dct`` searched by inner product, which for unit vectors is their
cosine), with that view's details (``detail``, base64 of 1,024 signed bytes, read back only for the rows a search
finds at or above the threshold, to confirm them) and the original's guard fields beside it, so that **one**
batched search — every image's whole, mirror, region and brightened descriptors at once — finds zoomed, cropped,
mirrored, bordered and brightened copies whichever arrived first (:func:`worker.decision.pair_kind` says
which pairs count).

The same code serves Milvus Lite (``DEDUP_MILVUS_URI=data/milvus-lite.db``, one process per file) and a Milvus
server or cluster (``http://host:19530``). Every read is Strong-consistent: the decision must see what the
previous batch stored. Client errors become :class:`~worker.errors.TransientError` so tasks retry.

    >>> index = Index.connect("data/milvus-lite.db", collection="image_dedup")
    >>> found = index.neighbours(batch)           # {id: [Neighbour, ...]}
    >>> index.store(originals); index.discard(duplicates)

Beside it, ``<collection>_links`` records which original each duplicate points at, so that when an original
stops being one (an earlier copy arrived, it was overwritten or removed) its duplicates are decided again. Each
link also carries how the duplicate matched (``kind``, ``score``) and what the worker did with it (``action``:
``tag`` or ``quarantine``; ``suggest`` for a ``similar``, which is only tagged and stays an original), which the
review gallery pages through (:meth:`Index.links`). A links collection of the older layout (without those
fields) stops the worker at start with :class:`IndexSchemaError`, which names the migration:
``python -m producer migrate-links``.

``<collection>_reviews`` holds what people decided on review (:mod:`worker.verdicts`): a restored duplicate is
"not a duplicate" for good, a confirmed one stays where it is.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
from pymilvus import DataType, MilvusClient

from worker import lite
from worker.config import env_name
from worker.decision import (
    BRIGHT,
    DESCRIPTOR_DIM,
    DETAIL_SIZE,
    Details,
    Look,
    Neighbour,
    Signals,
    Thresholds,
    Vector,
    combined_similarity,
    detail_similarities,
    pair_kind,
    views_of,
)
from worker.errors import TransientError

log = logging.getLogger(__name__)

ID_MAX_BYTES = 2048  # bucket (≤63) + "/" + key (≤1024 UTF-8 bytes), with room to spare
HNSW = {"M": 16, "efConstruction": 200}
#: The descriptor field of both collections. An index made before descriptors (``phash``: ±1 hash bits) needs
#: the re-index of :data:`MIGRATE`.
DESCRIPTOR = "dct"
DETAIL_FIELD = "detail"
DETAIL_CHARS = (DETAIL_SIZE + 2) // 3 * 4  # base64
STRONG = "Strong"
#: Hits asked for first when the caller says what is close enough to count (``within``): a query whose last one
#: still counts is asked again for ``search_limit``. Most hashes have no stored row near them, so most of the
#: rows a full search returns (and Milvus Lite materialises, and pymilvus parses hit by hit) are never used.
FIRST_HITS = 4
_LOOK = ["information", "split", "texture", "colour"]
_OUTPUT = ["id", "event_time_ms", "sha256", *_LOOK]
_LINK_DIM = 2
COLOUR_HEX = 96

#: How an older collection is re-indexed (README "Upgrading an index").
MIGRATE = (
    "it was made by an earlier version of image-dedup-worker, without the fields this one needs (the perceptual "
    "descriptors and details of this version, information, colour). Re-index: set {env}=<a new name> (e.g. "
    "{name}_v2), start the workers, run `python -m producer backfill --bucket B` for each bucket, then drop the "
    "old collections ({name}, {name}_links, {name}_hashes)"
)
#: What to do when a Milvus Lite file will not open: most often another process holds it.
LITE_SHARED = (
    "a Milvus Lite file serves one process; if another worker holds it, run several workers against one Milvus: "
    f"`{lite.MEMTABLE_ENV}={lite.MEMTABLE_BYTES} milvus-lite server --data-dir DIR --port 19530` (or a Milvus "
    "server) and "
    f"{env_name('milvus_uri')}=http://127.0.0.1:19530 for all of them"
)
#: Fields of the links collection's current layout; an older one lacks the last three.
LINK_FIELDS = ("id", "original", "event_time_ms", "kind", "score", "action")
MIGRATE_LINKS = "python -m producer migrate-links"

R = TypeVar("R")


class IndexSchemaError(RuntimeError):
    """The existing collection does not have the layout this version expects."""


#: The link ``action`` of a ``similar`` image: a semantic match only suggested (the default threshold), tagged and
#: never moved; the gallery labels it a suggestion.
SUGGEST = "suggest"


class Link(NamedTuple):
    """A duplicate's link to its original, with how it matched and what the worker does with it."""

    id: str
    original: str
    event_time_ms: int
    kind: str = ""
    score: float = 0.0
    action: str = ""  # "tag" or "quarantine" (Settings.action when it was decided), or SUGGEST for a similar


def milvus_literal(value: str) -> str:
    """A string as a Milvus expression literal (double-quoted, JSON escapes)."""
    return json.dumps(value, ensure_ascii=False)


class Index:
    def __init__(self, client: MilvusClient, collection: str, *, search_limit: int = 10, dim: int = 2048) -> None:
        self._client = client
        self.collection = collection
        self.search_limit = search_limit
        self.dim = dim
        self._lock = threading.Lock()  # one request at a time per client: Lite's local server is single-file

    @classmethod
    def connect(cls, uri: str, *, collection: str, token: str = "", search_limit: int = 10, dim: int = 2048) -> Index:
        """Open the collection, creating it (and, for Milvus Lite, its folder) when missing."""
        if uri.endswith(".db"):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            lite.tune_embedded()  # the engine starts in this process and reads its settings once
        try:
            client = MilvusClient(uri=uri, token=token)
        except Exception as exc:
            hint = f"; {LITE_SHARED}" if uri.endswith(".db") else ""
            raise TransientError("milvus", f"cannot connect to {uri}: {exc}{hint}") from exc
        index = cls(client, collection, search_limit=search_limit, dim=dim)
        try:
            index.ensure_collection()
        except BaseException:  # e.g. IndexSchemaError: let go of the (Lite) file for whoever fixes it
            index.close()
            raise
        return index

    def close(self) -> None:
        with self._lock:
            self._client.close()

    # Schema ---------------------------------------------------------------------------------------------------

    @property
    def links_collection(self) -> str:
        """The companion collection of duplicate → original links (``<collection>_links``)."""
        return f"{self.collection}_links"

    @property
    def hashes_collection(self) -> str:
        """The companion collection of every stored perceptual descriptor (``<collection>_hashes``)."""
        return f"{self.collection}_hashes"

    @property
    def reviews_collection(self) -> str:
        """The companion collection of review verdicts (``<collection>_reviews``, see :mod:`worker.verdicts`)."""
        return f"{self.collection}_reviews"

    @property
    def companions(self) -> tuple[str, ...]:
        return (self.links_collection, self.hashes_collection, self.reviews_collection)

    def ensure_collection(self) -> None:
        existed = self._call(self._client.has_collection, self.collection)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
        schema.add_field("sha256", DataType.VARCHAR, max_length=64)
        schema.add_field("event_time_ms", DataType.INT64)
        schema.add_field(DESCRIPTOR, DataType.FLOAT_VECTOR, dim=DESCRIPTOR_DIM)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.dim)
        _add_look_fields(schema)
        params = MilvusClient.prepare_index_params()
        params.add_index(field_name="sha256", index_type="INVERTED")
        params.add_index(field_name=DESCRIPTOR, index_type="HNSW", metric_type="IP", params=HNSW)
        params.add_index(field_name="embedding", index_type="HNSW", metric_type="COSINE", params=HNSW)
        self._create_if_missing(self.collection, schema, params)
        self._check_schema()
        if existed and not self._call(self._client.has_collection, self.hashes_collection):
            raise IndexSchemaError(
                f"{env_name('collection')}={self.collection}: "
                + MIGRATE.format(env=env_name("collection"), name=self.collection)
            )

        hashes = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        hashes.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES + 8)
        hashes.add_field("owner", DataType.VARCHAR, max_length=ID_MAX_BYTES)
        hashes.add_field("variant", DataType.INT64)
        hashes.add_field("event_time_ms", DataType.INT64)
        hashes.add_field(DESCRIPTOR, DataType.FLOAT_VECTOR, dim=DESCRIPTOR_DIM)
        hashes.add_field(DETAIL_FIELD, DataType.VARCHAR, max_length=DETAIL_CHARS)
        _add_look_fields(hashes)
        hash_params = MilvusClient.prepare_index_params()
        hash_params.add_index(field_name="owner", index_type="INVERTED")
        # Inner product of unit vectors is their cosine; it is also a matrix product rather than a difference
        # tensor in Milvus Lite's brute-force search of unsealed rows (8× faster than L2 for 384 queries).
        hash_params.add_index(field_name=DESCRIPTOR, index_type="HNSW", metric_type="IP", params=HNSW)
        self._create_if_missing(self.hashes_collection, hashes, hash_params)
        self._check_hashes_layout()

        self._check_links_layout()
        self._create_if_missing(self.links_collection, links_schema(), link_params())
        self._create_if_missing(self.reviews_collection, reviews_schema(), reviews_params())

    def _check_hashes_layout(self) -> None:
        """Refuse a ``_hashes`` collection of hash bits or without details (made by an earlier version): re-index."""
        described = self._call(self._client.describe_collection, self.hashes_collection)
        if not {DESCRIPTOR, DETAIL_FIELD} <= {f["name"] for f in described["fields"]}:
            raise IndexSchemaError(
                f"{env_name('collection')}={self.collection}: "
                + MIGRATE.format(env=env_name("collection"), name=self.collection)
            )

    def _check_links_layout(self) -> None:
        """Refuse a links collection of the older layout (no kind, score, action): the gallery needs them."""
        if not self._call(self._client.has_collection, self.links_collection):
            return
        described = self._call(self._client.describe_collection, self.links_collection)
        missing = [name for name in LINK_FIELDS if name not in {f["name"] for f in described["fields"]}]
        if missing:
            raise IndexSchemaError(
                f"{self.links_collection}: an older layout without {', '.join(missing)}; stop the workers and run "
                f"`{MIGRATE_LINKS}` (it copies every link into the new layout, reading kind and score from the "
                "duplicate's tags or quarantined copy), then start them again"
            )

    def _create_if_missing(self, name: str, schema: Any, params: Any) -> None:
        if not self._call(self._client.has_collection, name):
            try:
                self._call(
                    self._client.create_collection, name, schema=schema, index_params=params, consistency_level=STRONG
                )
                log.info("created Milvus collection %s", name)
            except TransientError:
                if not self._call(self._client.has_collection, name):  # lost a creation race?
                    raise
        self._call(self._client.load_collection, name)

    def _check_schema(self) -> None:
        described = self._call(self._client.describe_collection, self.collection)
        dims = {f["name"]: f.get("params", {}).get("dim") for f in described["fields"]}
        if "phash" in dims and DESCRIPTOR not in dims:  # hash bits: made before descriptors
            raise IndexSchemaError(
                f"{env_name('collection')}={self.collection}: "
                + MIGRATE.format(env=env_name("collection"), name=self.collection)
            )
        expected = {DESCRIPTOR: DESCRIPTOR_DIM, "embedding": self.dim}
        for name, dim in expected.items():
            if name not in dims or int(dims[name] or 0) != dim:
                raise IndexSchemaError(
                    f"{env_name('collection')}={self.collection}: field {name!r} should be a {dim}-d vector, "
                    f"found {dims.get(name)}; use a new collection name or drop the old one"
                )
        if "sha256" not in dims or "event_time_ms" not in dims:
            raise IndexSchemaError(f"{env_name('collection')}={self.collection}: not a collection of this service")
        if any(name not in dims for name in _LOOK):
            raise IndexSchemaError(
                f"{env_name('collection')}={self.collection}: "
                + MIGRATE.format(env=env_name("collection"), name=self.collection)
            )

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
        for row in self._query_in(self.collection, "sha256", (item.sha256 for item in batch), ["id", "sha256"]):
            if row["id"] not in own:
                by_sha.setdefault(row["sha256"], []).append(row["id"])
        for item in batch:
            for original in by_sha.get(item.sha256, []):
                measured[item.id].setdefault(original, {})

        self._perceptual(batch, measured, f"owner not in {others}", within)

        embedded = [item for item in batch if item.embedding is not None]
        if embedded:
            vectors = [item.embedding.tolist() for item in embedded if item.embedding is not None]
            semantic = None if within is None else within.semantic
            counts = None if semantic is None else (lambda cosine: cosine >= semantic)
            hits = self._search(self.collection, "embedding", vectors, ["id"], f"id not in {others}", counts)
            for item, found in zip(embedded, hits, strict=True):
                for hit in found:
                    measured[item.id].setdefault(str(hit["id"]), {})["cosine"] = float(hit["distance"])

        wanted = {original for per_image in measured.values() for original in per_image}
        rows = {row["id"]: row for row in self._query_in(self.collection, "id", wanted, _OUTPUT)}
        return {
            item_id: [_neighbour(rows[o], **m) for o, m in per_image.items() if o in rows]  # gone meanwhile: skip
            for item_id, per_image in measured.items()
        }

    def _perceptual(
        self,
        batch: Sequence[Signals],
        measured: dict[str, dict[str, dict[str, Any]]],
        where: str,
        within: Thresholds | None,
    ) -> None:
        """One search for every descriptor of every image (whole, mirror, regions, brightened) among every stored
        descriptor; each pair of variants is scored as :func:`~worker.decision.pair_kind` says, then combined per
        original. With ``within``, rows less similar than its perceptual threshold never match (a region pair
        counts only as the second-closest of two at or above it), and a row at or above it counts only when its
        details agree with the query's view (``within.detail``)."""
        floor = None if within is None else within.perceptual
        queries = [(item, variant, d) for item in batch for variant, d in _searched(item)]
        if not queries:
            return
        # An original's rows describe different views, so few of them lie near any one query: each query gets the
        # plain search's room. The cost grows with the rows returned (Milvus Lite materialises each).
        vectors = np.stack([d for _, _, d in queries]).tolist()
        counts = None if floor is None else (lambda found: found >= floor)
        # Ids only (an empty list would mean every field): a descriptor row's id is ``owner#variant``.
        hits_per_query = self._search(self.hashes_collection, DESCRIPTOR, vectors, ["id"], where, counts)
        if within is not None and floor is not None and within.detail is not None:
            hits_per_query = self._confirmed(queries, hits_per_query, floor, within.detail)
        views: dict[tuple[str, str], float] = {}  # (image, original) → closest "view" pair
        regions: dict[tuple[str, str], dict[int, float]] = {}  # (image, original) → region → similarity
        for (item, variant, _), hits in zip(queries, hits_per_query, strict=True):
            for hit in hits:
                owner, _, stored = str(hit["id"]).rpartition("#")
                kind = pair_kind(variant, int(stored))
                if kind is None:
                    continue
                pair, found = (item.id, owner), float(hit["distance"])
                if kind == "view":
                    views[pair] = max(found, views.get(pair, -1.0))
                else:
                    per_region = regions.setdefault(pair, {})
                    per_region[variant] = max(found, per_region.get(variant, -1.0))
        for pair in views.keys() | regions.keys():
            item_id, original = pair
            measured[item_id].setdefault(original, {})["perceptual"] = combined_similarity(
                views.get(pair), regions.get(pair, {})
            )

    def _confirmed(
        self,
        queries: Sequence[tuple[Signals, int, Vector]],
        hits_per_query: list[list[dict[str, Any]]],
        floor: float,
        detail: float,
    ) -> list[list[dict[str, Any]]]:
        """The hits, less those at or above ``floor`` whose stored details are less than ``detail`` alike to the
        query view's. One query reads the details of every such row (few: most searches find nothing near)."""
        wanted = {str(hit["id"]) for hits in hits_per_query for hit in hits if hit["distance"] >= floor}
        if not wanted:
            return hits_per_query
        rows = self._query_in(self.hashes_collection, "id", wanted, ["id", DETAIL_FIELD])
        stored = {row["id"]: _details(row[DETAIL_FIELD]) for row in rows}
        out = []
        for (item, variant, _), hits in zip(queries, hits_per_query, strict=True):
            own = item.look.details if item.look is not None else None
            kept = []
            for hit in hits:
                theirs = stored.get(str(hit["id"]))
                if (
                    hit["distance"] >= floor
                    and own is not None
                    and variant < len(own)
                    and theirs is not None
                    and len(theirs)
                    and float(detail_similarities(own[variant : variant + 1], theirs[None, :])[0, 0]) < detail
                ):
                    continue
                kept.append(hit)
            out.append(kept)
        return out

    def _search(
        self,
        collection: str,
        field: str,
        vectors: list[list[float]],
        output: list[str],
        where: str,
        counts: Callable[[float], bool] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """The ``search_limit`` nearest rows of each query. With ``counts`` (whether a hit's distance can take
        part in a decision), only :data:`FIRST_HITS` first, then ``search_limit`` for the queries whose last hit
        still counts: the hits that count are the same, the rest may be left out."""
        if counts is None or self.search_limit <= FIRST_HITS:
            return self._nearest(collection, field, vectors, output, where, self.search_limit)
        found = self._nearest(collection, field, vectors, output, where, FIRST_HITS)
        crowded = [i for i, hits in enumerate(found) if len(hits) == FIRST_HITS and counts(hits[-1]["distance"])]
        if crowded:
            more = self._nearest(collection, field, [vectors[i] for i in crowded], output, where, self.search_limit)
            for i, hits in zip(crowded, more, strict=True):
                found[i] = hits
        return found

    def _nearest(
        self, collection: str, field: str, vectors: list[list[float]], output: list[str], where: str, limit: int
    ) -> list[list[dict[str, Any]]]:
        result = self._call(
            self._client.search,
            collection,
            data=vectors,
            anns_field=field,
            filter=where,
            limit=limit,
            output_fields=output,
            # The same ef whatever the limit: the first hits of a FIRST_HITS search are those of a full one.
            search_params={"params": {"ef": max(64, self.search_limit)}},
            consistency_level=STRONG,
        )
        return [list(hits) for hits in result]

    def engine(self) -> str:
        """The server's version string: ``milvus_lite-3.2.2`` for Milvus Lite, embedded or a server."""
        return str(self._call(self._client.get_server_version))

    def count(self) -> int:
        rows = self._call(
            self._client.query, self.collection, filter="", output_fields=["count(*)"], consistency_level=STRONG
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def stored(self, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """The index's rows for these ids: ``{id: (sha256, event_time_ms)}``."""
        rows = self._query_in(self.collection, "id", ids, ["id", "sha256", "event_time_ms"])
        return {row["id"]: (row["sha256"], int(row["event_time_ms"])) for row in rows}

    def exact(self, digests: Iterable[str]) -> dict[str, list[Neighbour]]:
        """The originals holding exactly the bytes with each of these SHA-256s, in one query:
        ``{sha256: [Neighbour, ...]}`` (digests no original has are absent)."""
        found: dict[str, list[Neighbour]] = {}
        for row in self._query_in(self.collection, "sha256", digests, ["id", "event_time_ms", "sha256"]):
            found.setdefault(row["sha256"], []).append(
                Neighbour(row["id"], int(row["event_time_ms"]), sha256=row["sha256"])
            )
        return found

    def event_times(self, ids: Iterable[str]) -> dict[str, int]:
        return {key: when for key, (_, when) in self.stored(ids).items()}

    def dependents(self, originals: Iterable[str]) -> dict[str, int]:
        """The duplicates linked to these originals: ``{duplicate id: event_time_ms}``."""
        rows = self._query_in(self.links_collection, "original", originals, ["id", "event_time_ms"])
        return {row["id"]: int(row["event_time_ms"]) for row in rows}

    def links(self, expression: str = "", fields: Sequence[str] = LINK_FIELDS) -> list[dict[str, Any]]:
        """Every link row matching a Milvus filter ``expression`` (e.g. ``kind == "exact" and score < 0.95``;
        empty: all of them), with ``fields``. The review gallery reads them all; in Milvus Lite 10,000 rows take
        0.4–0.9 s on 2 cores, a scan whatever the filter."""
        rows: list[dict[str, Any]] = self._call(
            self._client.query,
            self.links_collection,
            filter=expression or 'id != ""',
            output_fields=list(fields),
            consistency_level=STRONG,
        )
        return rows

    def links_of(self, ids: Iterable[str]) -> dict[str, Link]:
        """The links of these duplicates: ``{id: Link}`` (ids that are no duplicate are absent)."""
        rows = self._query_in(self.links_collection, "id", ids, list(LINK_FIELDS))
        return {row["id"]: _link(row) for row in rows}

    def query(self, collection: str, expression: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        """Rows of one of this index's collections matching ``expression`` (Strong); for companion adapters."""
        rows: list[dict[str, Any]] = self._call(
            self._client.query, collection, filter=expression, output_fields=list(fields), consistency_level=STRONG
        )
        return rows

    def upsert(self, collection: str, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert rows into one of this index's collections; for companion adapters."""
        if rows:
            self._call(self._client.upsert, collection, list(rows))

    def _query_in(self, collection: str, field: str, values: Iterable[str], output: list[str]) -> list[dict[str, Any]]:
        """Rows whose ``field`` is one of ``values`` (Strong)."""
        wanted = sorted(set(values))
        if not wanted:
            return []
        rows: list[dict[str, Any]] = self._call(
            self._client.query,
            collection,
            filter=f"{field} in {milvus_literal_list(wanted)}",
            output_fields=output,
            consistency_level=STRONG,
        )
        return rows

    # Writes ---------------------------------------------------------------------------------------------------

    def store(self, originals: Sequence[Signals]) -> None:
        """Upsert originals (idempotent: a redelivery rewrites the same row)."""
        if not originals:
            return
        rows, hash_rows = [], []
        for item in originals:
            if item.embedding is None:
                raise ValueError(f"{item.id}: an original needs its embedding")
            look = _look_fields(item.look)
            common = {"event_time_ms": item.event_time_ms, **look}
            if item.dct is None:
                raise ValueError(f"{item.id}: an original needs its perceptual descriptor")
            rows.append(
                {
                    "id": item.id,
                    "sha256": item.sha256,
                    DESCRIPTOR: item.dct.tolist(),
                    "embedding": item.embedding.tolist(),
                    **common,
                }
            )
            for variant, d in _searched(item):
                if variant != 1:  # the mirror is searched with, never stored
                    hash_rows.append(
                        {
                            "id": f"{item.id}#{variant}",
                            "owner": item.id,
                            "variant": variant,
                            DESCRIPTOR: d.tolist(),
                            DETAIL_FIELD: _detail_text(item, variant),
                            **common,
                        }
                    )
        # Descriptors first: a crash in between leaves descriptor rows whose original row is written by the
        # redelivery (the message is not acknowledged); the other order would leave an original no perceptual
        # search finds.
        self._call(self._client.upsert, self.hashes_collection, hash_rows)
        self._call(self._client.upsert, self.collection, rows)

    def link(self, links: Iterable[Link | tuple[str, str, int]]) -> None:
        """Record each duplicate's :class:`Link` (or ``(duplicate id, original id, duplicate's event_time_ms)``)
        so that a duplicate can follow its original when that changes; a duplicate has one link (upsert)."""
        rows = [link_row(Link(*link)) for link in links]
        if rows:
            self._call(self._client.upsert, self.links_collection, rows)

    def unlink_now(self, ids: Iterable[str]) -> None:
        """Forget these duplicates' links whatever their time (a reviewer restored them: no longer duplicates)."""
        wanted = sorted(set(ids))
        if wanted:
            self._call(self._client.delete, self.links_collection, filter=f"id in {milvus_literal_list(wanted)}")

    def unlink(self, rows: Iterable[tuple[str, int]]) -> None:
        """Forget the links of ``(id, event_time_ms)`` (originals now, or gone), unless a newer upload made them."""
        self._delete_guarded(self.links_collection, rows)

    def discard(self, rows: Iterable[tuple[str, int]]) -> None:
        """Delete rows ``(id, event_time_ms)`` and their descriptors unless the index holds a newer version of that
        key (a stale event must not remove what a later upload stored)."""
        rows = list(rows)
        self._delete_guarded(self.collection, rows)
        self._delete_guarded(self.hashes_collection, rows, key="owner")

    def _delete_guarded(self, collection: str, rows: Iterable[tuple[str, int]], key: str = "id") -> None:
        clauses = [f"({key} == {milvus_literal(i)} and event_time_ms <= {int(t)})" for i, t in rows]
        if clauses:
            self._call(self._client.delete, collection, filter=" or ".join(clauses))

    # Plumbing -------------------------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        with self._lock:
            try:
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    if not _not_loaded(exc):
                        raise
                    # A restarted Milvus Lite (or a released collection) answers "load() first": load, go on.
                    log.warning("Milvus collections not loaded (restarted?); loading them again")
                    for name in (self.collection, *self.companions):
                        self._client.load_collection(name)
                    return fn(*args, **kwargs)
            except Exception as exc:
                raise TransientError("milvus", f"{getattr(fn, '__name__', fn)}: {exc}") from exc


def _not_loaded(exc: Exception) -> bool:
    """Milvus' "collection not loaded" error (code 101), which a restarted server gives until load()."""
    message = str(exc).lower()
    return getattr(exc, "code", None) == 101 or "call load()" in message or "not loaded" in message


def milvus_literal_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(milvus_literal(v) for v in values) + "]"


def _add_look_fields(schema: Any) -> None:
    for name in ("information", "split", "texture"):
        schema.add_field(name, DataType.FLOAT)
    schema.add_field("colour", DataType.VARCHAR, max_length=COLOUR_HEX)


def _look_fields(look: Look | None) -> dict[str, Any]:
    if look is None:  # not measured: stored as passing every guard, with no colour
        return {"information": 1e9, "split": 0.0, "texture": 1e9, "colour": ""}
    return {
        "information": look.information,
        "split": look.split,
        "texture": look.texture,
        "colour": look.colour.hex(),
    }


def _look(entity: dict[str, Any]) -> Look:
    return Look(
        information=float(entity["information"]),
        split=float(entity["split"]),
        texture=float(entity["texture"]),
        colour=bytes.fromhex(entity["colour"]),
    )


def _searched(item: Signals) -> list[tuple[int, Vector]]:
    """``(variant, descriptor)`` of an image's descriptors that are stored and searched: a brightened descriptor
    equal to the whole picture's (nothing to clip) would only repeat it."""
    views = views_of(item)
    if views is None:
        return []
    return [(v, d) for v, d in enumerate(views) if not (v == BRIGHT and np.array_equal(d, views[0]))]


def _detail_text(item: Signals, variant: int) -> str:
    """A view's details as stored (base64; empty when not measured)."""
    if item.look is None or variant >= len(item.look.details):
        return ""
    return base64.b64encode(item.look.details[variant].tobytes()).decode("ascii")


def _details(text: str) -> Details:
    """A stored view's details (empty when none were stored)."""
    return np.frombuffer(base64.b64decode(text), dtype=np.int8)


def _neighbour(row: dict[str, Any], **measured: Any) -> Neighbour:
    """An original's row (:data:`_OUTPUT`) with what the lookups measured about the pair."""
    return Neighbour(row["id"], int(row["event_time_ms"]), sha256=row["sha256"], look=_look(row), **measured)


# Companion layouts -------------------------------------------------------------------------------------------


def links_schema() -> Any:
    """``<collection>_links``: one row per duplicate. Links are scalar data; Milvus wants one vector field per
    collection, so they carry a constant 2-d one."""
    links = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    links.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
    links.add_field("original", DataType.VARCHAR, max_length=ID_MAX_BYTES)
    links.add_field("event_time_ms", DataType.INT64)
    links.add_field("kind", DataType.VARCHAR, max_length=16)
    links.add_field("score", DataType.FLOAT)
    links.add_field("action", DataType.VARCHAR, max_length=16)
    links.add_field("unused", DataType.FLOAT_VECTOR, dim=_LINK_DIM)
    return links


def link_params() -> Any:
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="original", index_type="INVERTED")
    params.add_index(field_name="unused", index_type="FLAT", metric_type="L2")
    return params


def reviews_schema() -> Any:
    """``<collection>_reviews``: one row per (verdict, object); see :mod:`worker.verdicts`."""
    reviews = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    reviews.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES + 16)
    reviews.add_field("object", DataType.VARCHAR, max_length=ID_MAX_BYTES)
    reviews.add_field("verdict", DataType.VARCHAR, max_length=16)
    reviews.add_field("original", DataType.VARCHAR, max_length=ID_MAX_BYTES)
    reviews.add_field("kind", DataType.VARCHAR, max_length=16)
    reviews.add_field("score", DataType.FLOAT)
    reviews.add_field("sha256", DataType.VARCHAR, max_length=64)
    reviews.add_field("event_time_ms", DataType.INT64)
    reviews.add_field("reviewed_at_ms", DataType.INT64)
    reviews.add_field("unused", DataType.FLOAT_VECTOR, dim=_LINK_DIM)
    return reviews


def reviews_params() -> Any:
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="object", index_type="INVERTED")
    params.add_index(field_name="unused", index_type="FLAT", metric_type="L2")
    return params


def link_row(link: Link) -> dict[str, Any]:
    return {
        "id": link.id,
        "original": link.original,
        "event_time_ms": int(link.event_time_ms),
        "kind": link.kind,
        "score": float(link.score),
        "action": link.action,
        "unused": [0.0] * _LINK_DIM,
    }


def unused_vector() -> list[float]:
    """The constant vector companion rows carry (Milvus wants one vector field per collection)."""
    return [0.0] * _LINK_DIM


def _link(row: dict[str, Any]) -> Link:
    return Link(
        row["id"],
        row["original"],
        int(row["event_time_ms"]),
        str(row.get("kind", "")),
        float(row.get("score", 0.0)),
        str(row.get("action", "")),
    )
