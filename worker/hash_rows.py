"""The hash rows (``<collection>_hashes``): one row per stored descriptor of an original, what the perceptual stage
searches.

A row per view of an original: the whole picture, each region of :data:`worker.fingerprint.REGIONS`, the brightened
picture when brightening changes its descriptor, the half-brightened one where brightening clips most of it and
the untrimmed picture when trimming did; id
``bucket/key#variant``; ``dct`` searched by inner product, which for unit vectors is their cosine. Each row carries
that view's details (``detail``, base64 of 1,024 signed bytes, read back only for the rows a search finds at or
above the threshold, to confirm them) and the original's guard fields beside it, so that **one** batched search —
every image's whole, mirror, region, brightened, untrimmed, untrimmed-mirror and half-brightened descriptors at
once — finds zoomed, cropped, mirrored, bordered and brightened copies whichever arrived first
(:func:`worker.decision.pair_kind` says which pairs count).

==============  ============================  ==========================================================
field           type                          meaning
==============  ============================  ==========================================================
id              VARCHAR primary key           ``bucket/key#variant``
owner           VARCHAR, indexed              the original's ``bucket/key``
variant         INT64                         which view (0: the whole picture)
event_time_ms   INT64                         the original's; guards deletes against stale events
dct             FLOAT_VECTOR(64), HNSW, IP    the view's perceptual descriptor (unit vector)
detail          VARCHAR                       the view's details (base64), to confirm a match
information…    as the originals'             the original's guard fields (:mod:`worker.originals`)
==============  ============================  ==========================================================

    >>> hashes = HashRows(milvus, "image_dedup_hashes", search_limit=10)
    >>> hashes.perceptual(batch, measured, 'owner not in ["photos/new.jpg"]', thresholds)
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from worker.decision import (
    BRIGHT,
    BRIGHT_HALF,
    DESCRIPTOR_DIM,
    DETAIL_SIZE,
    SEARCHED_ONLY,
    UNTRIMMED,
    UNTRIMMED_MIRROR,
    Details,
    Signals,
    Thresholds,
    Vector,
    combined_similarity,
    detail_similarities,
    details_agree,
    pair_kind,
    views_of,
)
from worker.milvus import HNSW, ID_MAX_BYTES, Milvus
from worker.originals import (
    COLOUR_HEX,
    DESCRIPTOR,
    add_look_fields,
    colour_chars,
    fitted,
    look_fields,
    reindex_error,
)
from worker.views import MIXED, RUNGS, ladder, mixed_details, pair_floor

DETAIL_FIELD = "detail"
DETAIL_CHARS = (DETAIL_SIZE + 2) // 3 * 4  # base64


class HashRows:
    def __init__(self, milvus: Milvus, name: str, *, search_limit: int) -> None:
        self.milvus = milvus
        self.name = name
        self.search_limit = search_limit
        self.colour_chars = COLOUR_HEX  # what the collection holds: read by ensure()

    def exists(self) -> bool:
        return self.milvus.has(self.name)

    def ensure(self, originals: str) -> None:
        """Create the collection when missing; refuse one of hash bits or without details (made by an earlier
        version): re-index the ``originals`` collection it belongs to."""
        hashes = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        hashes.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES + 8)
        hashes.add_field("owner", DataType.VARCHAR, max_length=ID_MAX_BYTES)
        hashes.add_field("variant", DataType.INT64)
        hashes.add_field("event_time_ms", DataType.INT64)
        hashes.add_field(DESCRIPTOR, DataType.FLOAT_VECTOR, dim=DESCRIPTOR_DIM)
        hashes.add_field(DETAIL_FIELD, DataType.VARCHAR, max_length=DETAIL_CHARS)
        add_look_fields(hashes)
        hash_params = MilvusClient.prepare_index_params()
        hash_params.add_index(field_name="owner", index_type=self.milvus.scalar_index)
        # Inner product of unit vectors is their cosine; it is also a matrix product rather than a difference
        # tensor in Milvus Lite's brute-force search of unsealed rows (8× faster than L2 for 384 queries).
        hash_params.add_index(field_name=DESCRIPTOR, index_type="HNSW", metric_type="IP", params=HNSW)
        self.milvus.create_if_missing(self.name, hashes, hash_params)
        fields = self.milvus.fields(self.name)
        if not {DESCRIPTOR, DETAIL_FIELD} <= {f["name"] for f in fields}:
            raise reindex_error(originals)
        self.colour_chars = colour_chars(fields)

    # Reads ----------------------------------------------------------------------------------------------------

    def perceptual(
        self,
        batch: Sequence[Signals],
        measured: dict[str, dict[str, dict[str, Any]]],
        where: str,
        within: Thresholds | None,
    ) -> None:
        """One search for every descriptor of every image (whole, mirror, regions, brightened, untrimmed) among every
        stored descriptor; each pair of variants is scored as :func:`~worker.decision.pair_kind` says, then combined per
        original into ``measured[image][original]["perceptual"]``. With ``within``, rows less similar than its
        perceptual threshold never match (a region pair counts only as the second-closest of two at or above it),
        and a row at or above it counts only when its details agree with the query's view (``within.detail``)."""
        floor = None if within is None else within.perceptual
        queries = [(item, variant, d) for item in batch for variant, d in searched(item)]
        if not queries:
            return
        # An original's rows describe different views, so few of them lie near any one query: each query gets the
        # plain search's room. The cost grows with the rows returned (Milvus Lite materialises each).
        vectors = np.stack([d for _, _, d in queries]).tolist()
        counts = None if floor is None else (lambda found: found >= floor)
        # Ids only (an empty list would mean every field): a descriptor row's id is ``owner#variant``.
        hits_per_query = self.milvus.search(
            self.name, DESCRIPTOR, vectors, ["id"], where, limit=self.search_limit, counts=counts
        )
        if within is not None and floor is not None and within.detail is not None:
            hits_per_query = self._confirmed(queries, hits_per_query, floor, within.detail, within.detail_region)
        views: dict[tuple[str, str], float] = {}  # (image, original) → closest "view" pair
        regions: dict[tuple[str, str], dict[int, float]] = {}  # (image, original) → region → similarity
        for (item, variant, _), hits in zip(queries, hits_per_query, strict=True):
            for hit in hits:
                owner, stored = split_row_id(hit["id"])
                kind = pair_kind(variant, stored)
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
        detail_region: float | None,
    ) -> list[list[dict[str, Any]]]:
        """The hits, less those at or above ``floor`` whose stored details are less alike to the query view's
        than :func:`~worker.views.pair_floor` asks (``detail``; ``detail_region`` for a whole picture against
        a region; less for quiet views; two whole views aligned, :func:`~worker.views.details_agree`). One query
        reads the details of every such row (few: most searches find nothing near)."""
        wanted = {str(hit["id"]) for hits in hits_per_query for hit in hits if hit["distance"] >= floor}
        if not wanted:
            return hits_per_query
        # A brightened row is confirmed against its picture's whole ladder (views.mixed): the untrimmed row, or the
        # whole picture's when nothing was trimmed (no row of its own), and its other brightened row if it has one.
        partners = {
            row_id(owner, v)
            for owner, stored in map(split_row_id, wanted)
            if stored in RUNGS
            for v in (0, UNTRIMMED, *RUNGS)
        }
        rows = self.milvus.query_in(self.name, "id", wanted | partners, ["id", DETAIL_FIELD])
        stored = {row["id"]: _details(row[DETAIL_FIELD]) for row in rows}
        out = []
        for (item, variant, _), hits in zip(queries, hits_per_query, strict=True):
            own = item.look.details if item.look is not None else None
            kept = []
            for hit in hits:
                theirs = stored.get(str(hit["id"]))
                if hit["distance"] < floor or own is None or variant >= len(own) or theirs is None or not len(theirs):
                    kept.append(hit)  # nothing to confirm
                elif self._agree(variant, hit, own, stored, detail, detail_region):
                    kept.append(hit)
            out.append(kept)
        return out

    @staticmethod
    def _agree(
        variant: int,
        hit: dict[str, Any],
        own: Details,
        stored: dict[str, Details],
        detail: float,
        detail_region: float | None,
    ) -> bool:
        """Whether a hit's stored details agree with the query view's (:func:`~worker.views.details_agree`; a whole
        or untrimmed view and a brightened one as :func:`~worker.views.mixed`, against the brightened view's whole
        ladder). ``own``: the query's details, every view; ``stored``: the stored rows' read back, by id."""
        owner, kind = split_row_id(hit["id"])
        mine, theirs = own[variant], stored[str(hit["id"])]
        partner = stored.get(row_id(owner, UNTRIMMED), stored.get(row_id(owner, 0)))
        if kind in RUNGS and variant in MIXED and partner is not None and len(partner):
            rungs = [stored[row_id(owner, r)] for r in RUNGS if len(stored.get(row_id(owner, r), ()))]
            plain = mixed_details(mine, [partner, *rungs])
        elif variant in RUNGS and kind in MIXED and len(own) > UNTRIMMED:
            plain = mixed_details(theirs, [own[v] for v in ladder(own)])
        else:
            plain = float(detail_similarities(mine[None, :], theirs[None, :])[0, 0])
        return details_agree(
            variant, kind, plain, pair_floor(variant, kind, detail, detail_region, mine, theirs), mine, theirs
        )

    # Writes ---------------------------------------------------------------------------------------------------

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        self.milvus.call(self.milvus.client.upsert, self.name, fitted(rows, self.colour_chars))

    def discard(self, rows: Iterable[tuple[str, int]]) -> None:
        """Delete the descriptors of originals ``(id, event_time_ms)`` unless a newer version of that key is
        stored."""
        self.milvus.delete_guarded(self.name, rows, key="owner")


def row_id(owner: str, variant: int) -> str:
    """A hash row's id: its picture's and the view's number (``photos/cat.jpg#2``)."""
    return f"{owner}#{variant}"


def split_row_id(row: object) -> tuple[str, int]:
    """The picture and view number of a hash row's id (:func:`row_id`)."""
    owner, _, variant = str(row).rpartition("#")
    return owner, int(variant)


def rows_of(item: Signals) -> list[dict[str, Any]]:
    """An original's hash rows: every stored view (the mirrors are searched with, never stored)."""
    common = {"event_time_ms": item.event_time_ms, **look_fields(item.look)}
    return [
        {
            "id": row_id(item.id, variant),
            "owner": item.id,
            "variant": variant,
            DESCRIPTOR: d.tolist(),
            DETAIL_FIELD: _detail_text(item, variant),
            **common,
        }
        for variant, d in searched(item)
        if variant not in SEARCHED_ONLY
    ]


def searched(item: Signals) -> list[tuple[int, Vector]]:
    """``(variant, descriptor)`` of an image's descriptors that are stored and searched: an untrimmed descriptor
    equal to the whole picture's (nothing trimmed), a brightened one equal to the untrimmed one (nothing to clip, or
    no half rung taken), or an untrimmed mirror equal to the mirror, would only repeat it."""
    views = views_of(item)
    if views is None:
        return []
    repeats = {BRIGHT: UNTRIMMED, BRIGHT_HALF: UNTRIMMED, UNTRIMMED: 0, UNTRIMMED_MIRROR: 1}
    return [(v, d) for v, d in enumerate(views) if not (v in repeats and np.array_equal(d, views[repeats[v]]))]


def _detail_text(item: Signals, variant: int) -> str:
    """A view's details as stored (base64; empty when not measured)."""
    if item.look is None or variant >= len(item.look.details):
        return ""
    return base64.b64encode(item.look.details[variant].tobytes()).decode("ascii")


def _details(text: str) -> Details:
    """A stored view's details (empty when none were stored)."""
    return np.frombuffer(base64.b64decode(text), dtype=np.int8)
