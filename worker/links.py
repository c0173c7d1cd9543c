"""The links (``<collection>_links``): which original each duplicate points at.

When an original stops being one (an earlier copy arrived, it was overwritten or removed) its duplicates are
decided again. Each link also carries how the duplicate matched (``kind``, ``score``) and what the worker did with
it (``action``: ``tag`` or ``quarantine``; :data:`SUGGEST` for a ``similar``, which is only tagged and stays an
original), which the review gallery pages through (:meth:`Links.rows`). A links collection of the older layout
(without those fields) stops the worker at start with :class:`~worker.milvus.IndexSchemaError`, which names the
migration: ``python -m producer migrate-links`` (:mod:`worker.migrate`).

==============  ============================  ==========================================================
field           type                          meaning
==============  ============================  ==========================================================
id              VARCHAR primary key           the duplicate's ``bucket/key``
original        VARCHAR, inverted index       its original's ``bucket/key``
event_time_ms   INT64                         the duplicate's upload time; guards deletes
kind, score     VARCHAR, FLOAT                how it matched
action          VARCHAR                       ``tag``, ``quarantine`` or ``suggest``
==============  ============================  ==========================================================

    >>> links = Links(milvus, links_collection("image_dedup"))
    >>> links.link([Link("photos/cat-2.jpg", "photos/cat.jpg", 1700000000000, "perceptual", 0.97, "tag")])
    >>> links.dependents(["photos/cat.jpg"])
    {'photos/cat-2.jpg': 1700000000000}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from pymilvus import DataType, MilvusClient

from worker.milvus import ID_MAX_BYTES, IndexSchemaError, Milvus, unused_vector

#: Fields of the links collection's current layout; an older one lacks the last three.
LINK_FIELDS = ("id", "original", "event_time_ms", "kind", "score", "action")
MIGRATE_LINKS = "python -m producer migrate-links"
#: The link ``action`` of a ``similar`` image: a semantic match only suggested (the default threshold), tagged and
#: never moved; the gallery labels it a suggestion.
SUGGEST = "suggest"


def links_collection(collection: str) -> str:
    """The links collection beside the originals' ``collection``."""
    return f"{collection}_links"


class Link(NamedTuple):
    """A duplicate's link to its original, with how it matched and what the worker does with it."""

    id: str
    original: str
    event_time_ms: int
    kind: str = ""
    score: float = 0.0
    action: str = ""  # "tag" or "quarantine" (Settings.action when it was decided), or SUGGEST for a similar


class Links:
    def __init__(self, milvus: Milvus, name: str) -> None:
        self.milvus = milvus
        self.name = name

    def ensure(self) -> None:
        """Refuse a links collection of the older layout (no kind, score, action: the gallery needs them), then
        create it when missing."""
        if self.milvus.has(self.name):
            missing = [name for name in LINK_FIELDS if name not in {f["name"] for f in self.milvus.fields(self.name)}]
            if missing:
                raise IndexSchemaError(
                    f"{self.name}: an older layout without {', '.join(missing)}; stop the workers and run "
                    f"`{MIGRATE_LINKS}` (it copies every link into the new layout, reading kind and score from the "
                    "duplicate's tags or quarantined copy), then start them again"
                )
        self.milvus.create_if_missing(self.name, links_schema(), link_params(self.milvus.scalar_index))

    # Reads ----------------------------------------------------------------------------------------------------

    def dependents(self, originals: Iterable[str]) -> dict[str, int]:
        """The duplicates linked to these originals: ``{duplicate id: event_time_ms}``."""
        rows = self.milvus.query_in(self.name, "original", originals, ["id", "event_time_ms"])
        return {row["id"]: int(row["event_time_ms"]) for row in rows}

    def rows(self) -> list[dict[str, Any]]:
        """Every link row (:data:`LINK_FIELDS`): what the review gallery filters itself. In Milvus Lite 10,000 rows
        take 0.4–0.9 s on 2 cores, a scan whatever a filter would have asked."""
        return self.milvus.query(self.name, 'id != ""', LINK_FIELDS)

    def of(self, ids: Iterable[str]) -> dict[str, Link]:
        """The links of these duplicates: ``{id: Link}`` (ids that are no duplicate are absent)."""
        rows = self.milvus.query_in(self.name, "id", ids, list(LINK_FIELDS))
        return {row["id"]: _link(row) for row in rows}

    # Writes ---------------------------------------------------------------------------------------------------

    def link(self, links: Iterable[Link | tuple[str, str, int]]) -> None:
        """Record each duplicate's :class:`Link` (or ``(duplicate id, original id, duplicate's event_time_ms)``)
        so that a duplicate can follow its original when that changes; a duplicate has one link (upsert)."""
        self.milvus.upsert(self.name, [link_row(Link(*link)) for link in links])

    def unlink_now(self, ids: Iterable[str]) -> None:
        """Forget these duplicates' links whatever their time (a reviewer restored them: no longer duplicates)."""
        self.milvus.delete_ids(self.name, ids)

    def unlink(self, rows: Iterable[tuple[str, int]]) -> None:
        """Forget the links of ``(id, event_time_ms)`` (originals now, or gone), unless a newer upload made them."""
        self.milvus.delete_guarded(self.name, rows)


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
    links.add_field("unused", DataType.FLOAT_VECTOR, dim=len(unused_vector()))
    return links


def link_params(scalar_index: str = "INVERTED") -> Any:
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="original", index_type=scalar_index)
    params.add_index(field_name="unused", index_type="FLAT", metric_type="L2")
    return params


def is_current(fields: Iterable[str]) -> bool:
    """Whether a links collection with these fields has the current layout."""
    return set(LINK_FIELDS) <= set(fields)


def link_row(link: Link) -> dict[str, Any]:
    return {
        "id": link.id,
        "original": link.original,
        "event_time_ms": int(link.event_time_ms),
        "kind": link.kind,
        "score": float(link.score),
        "action": link.action,
        "unused": unused_vector(),
    }


def _link(row: dict[str, Any]) -> Link:
    return Link(
        row["id"],
        row["original"],
        int(row["event_time_ms"]),
        str(row.get("kind", "")),
        float(row.get("score", 0.0)),
        str(row.get("action", "")),
    )
