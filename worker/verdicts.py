"""The review verdicts (``<collection>_reviews``), beside the index's other collections: schema and queries.

A person who looked at a duplicate in the review gallery either **restored** it (it was no duplicate: it is put
back and must never be moved again) or **confirmed** it (it is a duplicate; it stays where it is). The worker
adds one row of its own, **promoted**, when it puts a quarantined duplicate back as the new original because
its original was removed or overwritten (``original`` names the one that went). One row per
``(verdict, object)``, upserted, so recording a verdict twice changes nothing; a confirmed duplicate that is
restored later keeps both rows (the counts below only grow).

==============  ============================  ===========================================================
field           type                          meaning
==============  ============================  ===========================================================
id              VARCHAR primary key           ``<verdict>:<bucket/key>``
object          VARCHAR, inverted index       ``bucket/key`` of the duplicate reviewed
verdict         VARCHAR                       ``restored``, ``confirmed`` or ``promoted``
original        VARCHAR                       the original it had been matched with
kind, score     VARCHAR, FLOAT                how it had matched
sha256          VARCHAR(64)                   the reviewed bytes: a restore covers these bytes only
event_time_ms   INT64                         the duplicate's upload time (its place in the order)
reviewed_at_ms  INT64                         when it was first recorded
==============  ============================  ===========================================================

    >>> reviews = Reviews(index)
    >>> reviews.record(Review("photos/cat-2.jpg", RESTORED, "photos/cat.jpg", "perceptual", 0.95, sha))
    >>> reviews.restored(["photos/cat-2.jpg"])
    {'photos/cat-2.jpg': '9f86d0…'}
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pymilvus import DataType, MilvusClient

from worker.decision import Kind
from worker.milvus import ID_MAX_BYTES, Milvus, milvus_literal, milvus_literal_list, unused_vector

if TYPE_CHECKING:
    from worker.index import Index

RESTORED = "restored"
CONFIRMED = "confirmed"
VERDICTS = (RESTORED, CONFIRMED)  # a person's: counted in dedup_reviews_total
#: Not a person's verdict: the worker put a quarantined duplicate back as the original when its original went
#: (:mod:`worker.promotion`); recorded here so that the gallery can say why a picture is an original.
PROMOTED = "promoted"
KINDS = tuple(kind.value for kind in Kind)

_FIELDS = ["object", "verdict", "original", "kind", "score", "sha256", "event_time_ms", "reviewed_at_ms"]


@dataclass(frozen=True, slots=True)
class Review:
    object: str
    verdict: str
    original: str
    kind: str
    score: float
    sha256: str
    event_time_ms: int = 0
    reviewed_at_ms: int = 0

    @property
    def id(self) -> str:
        return f"{self.verdict}:{self.object}"


def reviews_collection(collection: str) -> str:
    """The verdicts' collection beside the originals' ``collection``."""
    return f"{collection}_reviews"


def create(milvus: Milvus, name: str) -> None:
    """Create the verdicts' collection ``name`` when missing."""
    milvus.create_if_missing(name, reviews_schema(), reviews_params(milvus.scalar_index))


def reviews_schema() -> Any:
    """``<collection>_reviews``: one row per (verdict, object); the fields of the table above."""
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
    reviews.add_field("unused", DataType.FLOAT_VECTOR, dim=len(unused_vector()))
    return reviews


def reviews_params(scalar_index: str = "INVERTED") -> Any:
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="object", index_type=scalar_index)
    params.add_index(field_name="unused", index_type="FLAT", metric_type="L2")
    return params


class Reviews:
    """The verdicts of an :class:`~worker.index.Index`'s collection, over its connection."""

    def __init__(self, index: Index) -> None:
        self.milvus = index.milvus
        self.collection = index.reviews_collection

    def record(self, review: Review) -> Review:
        """Store a verdict (idempotent: a verdict already recorded keeps its first time); returns what is stored."""
        if review.verdict not in (*VERDICTS, PROMOTED):
            raise ValueError(f"verdict must be one of {(*VERDICTS, PROMOTED)}, not {review.verdict!r}")
        earlier = self.of(review.object).get(review.verdict)
        when = earlier.reviewed_at_ms if earlier else review.reviewed_at_ms or int(time.time() * 1000)
        stored = replace(review, reviewed_at_ms=when)
        row: dict[str, Any] = {
            "id": stored.id,
            "object": stored.object,
            "verdict": stored.verdict,
            "original": stored.original,
            "kind": stored.kind,
            "score": float(stored.score),
            "sha256": stored.sha256,
            "event_time_ms": int(stored.event_time_ms),
            "reviewed_at_ms": when,
            "unused": unused_vector(),
        }
        self.milvus.upsert(self.collection, [row])
        return stored

    def of(self, object_id: str) -> dict[str, Review]:
        """The verdicts recorded for one object: ``{verdict: Review}``."""
        return {verdict: review for (_, verdict), review in self._rows([object_id]).items()}

    def verdicts(self, ids: Iterable[str]) -> dict[str, dict[str, Review]]:
        """``{object: {verdict: Review}}`` for those of ``ids`` that were reviewed."""
        found: dict[str, dict[str, Review]] = {}
        for (object_id, verdict), review in self._rows(ids).items():
            found.setdefault(object_id, {})[verdict] = review
        return found

    def restored(self, ids: Iterable[str]) -> dict[str, str]:
        """``{object: sha256 of the restored bytes}`` for those of ``ids`` a reviewer restored."""
        rows = self._rows(ids).items()
        return {object_id: review.sha256 for (object_id, verdict), review in rows if verdict == RESTORED}

    def counts(self) -> dict[tuple[str, str], int]:
        """How many verdicts of each ``(verdict, kind)`` are recorded; every combination present, 0 included."""
        counts = {(verdict, kind): 0 for verdict in VERDICTS for kind in KINDS}
        for verdict, kind in counts:
            expression = f"verdict == {milvus_literal(verdict)} and kind == {milvus_literal(kind)}"
            rows = self.milvus.query(self.collection, expression, ["count(*)"])
            counts[(verdict, kind)] = int(rows[0]["count(*)"]) if rows else 0
        return counts

    def _rows(self, ids: Iterable[str]) -> dict[tuple[str, str], Review]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = self.milvus.query(self.collection, f"object in {milvus_literal_list(wanted)}", _FIELDS)
        return {
            (row["object"], row["verdict"]): Review(
                row["object"],
                row["verdict"],
                row["original"],
                row["kind"],
                float(row["score"]),
                row["sha256"],
                int(row["event_time_ms"]),
                int(row["reviewed_at_ms"]),
            )
            for row in rows
        }
