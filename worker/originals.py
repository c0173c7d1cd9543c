"""The collection of originals (``<collection>``), keyed by ``bucket/key``: its digest, embedding and guard fields.

==============  ============================  ==========================================================
field           type                          used by
==============  ============================  ==========================================================
id              VARCHAR primary key           ``bucket/key``
sha256          VARCHAR(64), indexed          exact stage: ``sha256 in [...]``
event_time_ms   INT64                         ordering; guards deletes against stale events
embedding       FLOAT_VECTOR(2048), HNSW,     semantic stage (unit vectors; COSINE returns similarity)
                COSINE
information,    FLOAT                         the guards (:class:`worker.decision.Guard`)
split, texture
colour          VARCHAR(96)                   colour check (hex of the colour layout)
==============  ============================  ==========================================================

The guard fields (:func:`add_look_fields`) are repeated on every hash row (:mod:`worker.hash_rows`), which also
hold the perceptual descriptors, the whole picture's among them: ``embedding`` is the one vector field, as a Milvus
2.3 server (one vector field per collection) and every later one accept. A collection made before this layout has
a ``dct`` field too (the whole picture's descriptor, never searched): rows stored there keep filling it, so it needs
no re-index. A collection made by an earlier version (hash bits, no guard fields) stops the worker at start with
:class:`~worker.milvus.IndexSchemaError`, which says how to re-index (:data:`MIGRATE`).

Perceptual-only (``DEDUP_MODEL_WEIGHTS=none``, ``dim=None``) stores no embeddings: ``embedding`` is then the
constant :func:`~worker.milvus.unused_vector` of the scalar collections (FLAT, L2; Milvus wants a vector field),
never searched. A collection made in one mode is refused in the other (:func:`mode_error`): its rows lack the
embeddings the semantic stage needs, or hold ones nothing would keep up to date.

    >>> originals = Originals(milvus, "image_dedup", dim=2048, search_limit=10)  # dim=None: perceptual-only
    >>> originals.ensure()
    >>> originals.exact([sha])  # {sha256: [Neighbour, ...]}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pymilvus import DataType, MilvusClient

from worker.config import NO_MODEL, env_name
from worker.decision import DESCRIPTOR_DIM, Look, Neighbour, Signals
from worker.guard import LAYOUT_BYTES, SHADE_BYTES
from worker.milvus import HNSW, ID_MAX_BYTES, UNUSED_DIM, IndexSchemaError, Milvus, unused_vector

#: The descriptor field of the hash rows, and of originals collections made before this layout. An index made before
#: descriptors (``phash``: ±1 hash bits) needs the re-index of :data:`MIGRATE`.
DESCRIPTOR = "dct"
LOOK = ["information", "split", "texture", "colour"]
#: What a lookup reads of each original it found.
OUTPUT = ["id", "event_time_ms", "sha256", *LOOK]
#: The colour field's characters: the colour layout's 48 bytes and its shade's 3 (:mod:`worker.guard`), in hex. A
#: collection made before the shade holds :data:`LAYOUT_HEX` (:func:`colour_chars`): rows stored there keep the
#: layout alone, and the shade is not compared with them.
COLOUR_HEX = 2 * (LAYOUT_BYTES + SHADE_BYTES)
LAYOUT_HEX = 2 * LAYOUT_BYTES

#: How an older collection is re-indexed (docs/operations.md "Upgrading an index").
MIGRATE = (
    "it was made by an earlier version of image-dedup-worker, without the fields this one needs (the perceptual "
    "descriptors and details of this version, information, colour). Re-index: set {env}=<a new name> (e.g. "
    "{name}_v2), start the workers, run `python -m producer backfill --bucket B` for each bucket, then drop the "
    "old collections ({name}, {name}_links, {name}_hashes)"
)


def reindex_error(collection: str) -> IndexSchemaError:
    """The error of a collection made by an earlier version: it says how to re-index."""
    return IndexSchemaError(
        f"{env_name('collection')}={collection}: " + MIGRATE.format(env=env_name("collection"), name=collection)
    )


def mode_error(collection: str, *, semantic: bool) -> IndexSchemaError:
    """The error of a collection made in the other mode: with embeddings for a perceptual-only worker
    (``semantic=False``), or without them for a worker with a model (``semantic=True``)."""
    weights, new = env_name("model_weights"), f"{env_name('collection')}=<a new name> (e.g. {collection}_v2)"
    if semantic:
        found = (
            f"it was made perceptual-only ({weights}={NO_MODEL}) and holds no embeddings for the semantic stage. "
            f"Either set {weights}={NO_MODEL} again, or set {new}, start the workers and run `python -m producer "
            "backfill --bucket B` for each bucket, so that every original is embedded"
        )
    else:
        found = (
            f"it was made with a model and holds embeddings, which {weights}={NO_MODEL} (perceptual-only) would "
            f"leave out of date. Either set {weights} back to the weights it was made with, or set {new}, start "
            "the workers and run `python -m producer backfill --bucket B` for each bucket"
        )
    return IndexSchemaError(f"{env_name('collection')}={collection}: {found}")


class Originals:
    """The originals' collection; ``dim`` is its embeddings' width, None for perceptual-only (no embeddings)."""

    def __init__(self, milvus: Milvus, name: str, *, dim: int | None, search_limit: int) -> None:
        self.milvus = milvus
        self.name = name
        self.dim = dim
        self.search_limit = search_limit
        self.colour_chars = COLOUR_HEX  # what the collection holds: read by ensure()
        self.descriptor = False  # whether it has the older layout's ``dct`` field: read by ensure()

    @property
    def semantic(self) -> bool:
        """Whether the originals carry embeddings (a model computes them) that the semantic stage searches."""
        return self.dim is not None

    @property
    def embedding_dim(self) -> int:
        """The width of the ``embedding`` field: the embeddings', or the constant unused vector's."""
        return UNUSED_DIM if self.dim is None else self.dim

    def exists(self) -> bool:
        return self.milvus.has(self.name)

    def ensure(self) -> None:
        """Create the collection when missing; refuse one of another layout (:class:`IndexSchemaError`)."""
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
        schema.add_field("sha256", DataType.VARCHAR, max_length=64)
        schema.add_field("event_time_ms", DataType.INT64)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.embedding_dim)
        add_look_fields(schema)
        params = MilvusClient.prepare_index_params()
        params.add_index(field_name="sha256", index_type=self.milvus.scalar_index)
        if self.semantic:
            params.add_index(field_name="embedding", index_type="HNSW", metric_type="COSINE", params=HNSW)
        else:  # the constant vector, never searched: as the links' (worker.links)
            params.add_index(field_name="embedding", index_type="FLAT", metric_type="L2")
        self.milvus.create_if_missing(self.name, schema, params)
        fields = self.milvus.fields(self.name)
        self._check_schema(fields)
        self.colour_chars = colour_chars(fields)
        self.descriptor = any(f["name"] == DESCRIPTOR for f in fields)

    def _check_schema(self, fields: list[dict[str, Any]]) -> None:
        dims = {f["name"]: f.get("params", {}).get("dim") for f in fields}
        if "phash" in dims and DESCRIPTOR not in dims:  # hash bits: made before descriptors
            raise reindex_error(self.name)
        expected = {"embedding": self.embedding_dim}
        if DESCRIPTOR in dims:  # made before this layout
            expected[DESCRIPTOR] = DESCRIPTOR_DIM
        for name, dim in expected.items():
            found = int(dims.get(name) or 0)
            if name == "embedding" and found and found != dim and UNUSED_DIM in (found, dim):
                raise mode_error(self.name, semantic=self.semantic)
            if found != dim:
                raise IndexSchemaError(
                    f"{env_name('collection')}={self.name}: field {name!r} should be a {dim}-d vector, "
                    f"found {dims.get(name)}; use a new collection name or drop the old one"
                )
        if "sha256" not in dims or "event_time_ms" not in dims:
            raise IndexSchemaError(f"{env_name('collection')}={self.name}: not a collection of this service")
        if any(name not in dims for name in LOOK):
            raise reindex_error(self.name)

    # Reads ----------------------------------------------------------------------------------------------------

    def count(self) -> int:
        rows = self.milvus.query(self.name, "", ["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def stored(self, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """The rows for these ids: ``{id: (sha256, event_time_ms)}``."""
        rows = self.milvus.query_in(self.name, "id", ids, ["id", "sha256", "event_time_ms"])
        return {row["id"]: (row["sha256"], int(row["event_time_ms"])) for row in rows}

    def exact(self, digests: Iterable[str]) -> dict[str, list[Neighbour]]:
        """The originals holding exactly the bytes with each of these SHA-256s, in one query:
        ``{sha256: [Neighbour, ...]}`` (digests no original has are absent)."""
        found: dict[str, list[Neighbour]] = {}
        for row in self.milvus.query_in(self.name, "sha256", digests, ["id", "event_time_ms", "sha256"]):
            found.setdefault(row["sha256"], []).append(
                Neighbour(row["id"], int(row["event_time_ms"]), sha256=row["sha256"])
            )
        return found

    def ids_by_sha256(self, digests: Iterable[str]) -> list[dict[str, Any]]:
        """``{"id", "sha256"}`` of every original with one of these SHA-256s."""
        return self.milvus.query_in(self.name, "sha256", digests, ["id", "sha256"])

    def rows(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The :data:`OUTPUT` fields of these originals: ``{id: row}`` (ids not stored are absent)."""
        return {row["id"]: row for row in self.milvus.query_in(self.name, "id", ids, OUTPUT)}

    def nearest_embeddings(
        self, vectors: list[list[float]], where: str, counts: Callable[[float], bool] | None
    ) -> list[list[dict[str, Any]]]:
        """The ids and cosines of the originals nearest each embedding (semantic stage; never perceptual-only)."""
        if not self.semantic:
            raise ValueError(f"{self.name}: perceptual-only, it holds no embeddings to search")
        return self.milvus.search(
            self.name, "embedding", vectors, ["id"], where, limit=self.search_limit, counts=counts
        )

    # Writes ---------------------------------------------------------------------------------------------------

    def row(self, item: Signals) -> dict[str, Any]:
        """An original's row for this collection: with its embedding, or perceptual-only without one; with the
        whole picture's descriptor too in a collection of the older layout."""
        stored = row(item, semantic=self.semantic)
        if self.descriptor and item.dct is not None:
            stored[DESCRIPTOR] = item.dct.tolist()
        return stored

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        self.milvus.call(self.milvus.client.upsert, self.name, fitted(rows, self.colour_chars))

    def discard(self, rows: Iterable[tuple[str, int]]) -> None:
        """Delete rows ``(id, event_time_ms)`` unless a newer version of that key is stored."""
        self.milvus.delete_guarded(self.name, rows)


def row(item: Signals, *, semantic: bool = True) -> dict[str, Any]:
    """An original's row. It needs its perceptual descriptor (stored in its hash rows, :mod:`worker.hash_rows`), and
    its embedding unless perceptual-only: then the row carries the constant unused vector instead."""
    if semantic and item.embedding is None:
        raise ValueError(f"{item.id}: an original needs its embedding")
    look = look_fields(item.look)
    if item.dct is None:
        raise ValueError(f"{item.id}: an original needs its perceptual descriptor")
    embedding = item.embedding.tolist() if semantic and item.embedding is not None else unused_vector()
    return {
        "id": item.id,
        "sha256": item.sha256,
        "embedding": embedding,
        "event_time_ms": item.event_time_ms,
        **look,
    }


def neighbour(row: dict[str, Any], **measured: Any) -> Neighbour:
    """An original's row (:data:`OUTPUT`) with what the lookups measured about the pair."""
    return Neighbour(row["id"], int(row["event_time_ms"]), sha256=row["sha256"], look=_look(row), **measured)


def add_look_fields(schema: Any) -> None:
    """The guard fields, on the originals and on every hash row."""
    for name in ("information", "split", "texture"):
        schema.add_field(name, DataType.FLOAT)
    schema.add_field("colour", DataType.VARCHAR, max_length=COLOUR_HEX)


def colour_chars(fields: Iterable[dict[str, Any]]) -> int:
    """How many characters a collection's colour field holds (:data:`COLOUR_HEX`, or :data:`LAYOUT_HEX` in one
    made before the shade), from Milvus's description of its fields.

        >>> colour_chars([{"name": "colour", "params": {"max_length": 96}}]), colour_chars([])
        (96, 102)
    """
    for f in fields:
        if f["name"] == "colour":
            return int(f.get("params", {}).get("max_length", COLOUR_HEX))
    return COLOUR_HEX


def fitted(rows: list[dict[str, Any]], chars: int) -> list[dict[str, Any]]:
    """``rows`` with their colour cut to ``chars`` characters (the layout alone, in a collection made before the
    shade)."""
    if chars >= COLOUR_HEX:
        return rows
    return [{**r, "colour": r["colour"][:chars]} if len(r.get("colour", "")) > chars else r for r in rows]


def look_fields(look: Look | None) -> dict[str, Any]:
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
