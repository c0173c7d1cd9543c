"""The review gallery's core: which duplicates a page shows, grouped under their originals. No I/O.

The rows come from the index's links collection (``<collection>_links``: one row per duplicate, with its
original, kind, score, time and the action taken), never from listing buckets. :class:`Filters` parses the page's
query string and :meth:`Filters.keeps` tests a row against it (bucket, key prefix, kind, score range, one
original); :func:`paginate` keeps the rows that pass, groups them by original and cuts out one page: lowest scores
first by default (the likeliest mistakes), 50 groups a page. The rows are every link, read at most every few
seconds (:class:`producer.gallery_snapshot.LinkSnapshot`), so a filter or a next page costs no scan of the index.

    >>> filters = Filters.parse({"bucket": "photos", "kind": "perceptual", "max_score": "0.95"})
    >>> filters.keeps({"id": "photos/cat-2.jpg", "original": "photos/cat.jpg", "kind": "perceptual", "score": 0.93})
    True
    >>> page = paginate(index.links(), filters)
    >>> [g.original for g in page.groups][:1]
    ['photos/cat.jpg']
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from worker.decision import SCORE_DIGITS, Kind
from worker.links import SUGGEST
from worker.messages import split_id
from worker.object_ids import BadIdError, parse_id

PER_PAGE = 50
#: Duplicates shown per group on a page (lowest scores first); the rest are one click away (``original=``).
PER_GROUP = 24
#: ... and on the page of one group.
PER_GROUP_ALONE = 1000
ORDERS = {"score": "lowest score first", "-score": "highest score first", "newest": "newest first"}
WHERE = {
    "tag": "tagged in place",
    "quarantine": "in quarantine",
    # a ``similar``: tagged, an original still, never moved
    SUGGEST: "similar: not moved; a semantic match below a threshold nobody has measured",
}

# S3 bucket names: lowercase letters, digits, dots and hyphens (so none of LIKE's wildcards or quotes).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,62}")


class BadFilterError(ValueError):
    """A query parameter the gallery cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class Filters:
    bucket: str = ""
    prefix: str = ""
    kind: str = ""
    min_score: float | None = None
    max_score: float | None = None
    order: str = "score"
    page: int = 1
    original: str = ""  # one group only

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Filters:
        """Filters from a query string's parameters (empty values mean "any"); :class:`BadFilterError` names a
        bad one."""
        bucket = params.get("bucket", "").strip()
        if bucket and not _BUCKET.fullmatch(bucket):
            raise BadFilterError(f"bucket: {bucket!r} is not a bucket name")
        kind = params.get("kind", "").strip()
        if kind and kind not in {k.value for k in Kind}:
            raise BadFilterError(f"kind: must be one of {', '.join(k.value for k in Kind)}")
        original = params.get("original", "")
        if original:
            try:  # only an id's syntax (any bucket: links name what they name)
                parse_id(original, allowed=lambda _: True)
            except BadIdError as exc:
                raise BadFilterError(f"original: {exc}") from None
        order = params.get("order", "").strip() or "score"
        if order not in ORDERS:
            raise BadFilterError(f"order: must be one of {', '.join(ORDERS)}")
        return cls(
            bucket=bucket,
            prefix=params.get("prefix", ""),
            kind=kind,
            min_score=_score(params, "min_score"),
            max_score=_score(params, "max_score"),
            order=order,
            page=_page(params.get("page", "")),
            original=original,
        )

    def keeps(self, row: Mapping[str, Any]) -> bool:
        """Whether a link row passes every filter: its bucket, a key that starts with the prefix (exact, any
        character), its kind, its score within the range (bounds included, compared at :data:`SCORE_DIGITS`
        places: Milvus keeps a score as a 32-bit float) and its original."""
        bucket, key = split_id(row["id"])
        score = round(float(row["score"]), SCORE_DIGITS)
        return (
            (not self.bucket or bucket == self.bucket)
            and key.startswith(self.prefix)
            and (not self.kind or row["kind"] == self.kind)
            and (self.min_score is None or score >= self.min_score)
            and (self.max_score is None or score <= self.max_score)
            and (not self.original or row["original"] == self.original)
        )

    def query(self, **changes: Any) -> str:
        """This page's query string, with ``changes`` (e.g. ``page=2``); empty filters left out."""
        changed = replace(self, **changes)
        values = {
            "bucket": changed.bucket,
            "prefix": changed.prefix,
            "kind": changed.kind,
            "min_score": "" if changed.min_score is None else f"{changed.min_score:g}",
            "max_score": "" if changed.max_score is None else f"{changed.max_score:g}",
            "order": "" if changed.order == "score" else changed.order,
            "page": "" if changed.page == 1 else str(changed.page),
            "original": changed.original,
        }
        return urlencode({k: v for k, v in values.items() if v})


@dataclass(frozen=True, slots=True)
class Duplicate:
    id: str
    original: str
    kind: str
    score: float
    event_time_ms: int
    action: str  # "tag", "quarantine" or "suggest" (a similar: a suggestion, not moved)
    reviewed: str = ""  # "confirmed" once a person confirmed it

    @property
    def bucket(self) -> str:
        return split_id(self.id)[0]

    @property
    def key(self) -> str:
        return split_id(self.id)[1]

    @property
    def suggested(self) -> bool:
        """A ``similar``: only suggested as a duplicate (the default semantic threshold), left where it is."""
        return self.action == SUGGEST

    @property
    def where(self) -> str:
        return WHERE.get(self.action, self.action or "unknown")


@dataclass(frozen=True, slots=True)
class Group:
    original: str
    duplicates: tuple[Duplicate, ...]  # those shown
    more: int = 0  # not shown on this page
    promoted_from: str = ""  # the original was promoted from quarantine when this one (removed or overwritten) went

    @property
    def lowest_score(self) -> float:
        return min(d.score for d in self.duplicates)

    @property
    def newest_ms(self) -> int:
        return max(d.event_time_ms for d in self.duplicates)


@dataclass(frozen=True, slots=True)
class Page:
    filters: Filters
    groups: tuple[Group, ...]
    total_groups: int
    total_duplicates: int
    per_page: int = PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total_groups / self.per_page))

    @property
    def ids(self) -> list[str]:
        return [d.id for g in self.groups for d in g.duplicates]


def paginate(rows: Iterable[Mapping[str, Any]], filters: Filters, per_page: int = PER_PAGE) -> Page:
    """Group link rows by original, order the groups and cut out ``filters.page`` (a page past the end is empty).

    Groups are ordered by their lowest score (``score``, the default), highest (``-score``) or newest duplicate
    (``newest``); ties by original. Within a group, lowest score first, at most :data:`PER_GROUP` of them (with
    ``original`` set, the page of that one group: :data:`PER_GROUP_ALONE`).
    """
    grouped: dict[str, list[Duplicate]] = {}
    count = 0
    for row in rows:
        if not filters.keeps(row):
            continue
        duplicate = Duplicate(
            row["id"],
            row["original"],
            row["kind"],
            float(row["score"]),
            int(row["event_time_ms"]),
            row.get("action", ""),
        )
        grouped.setdefault(duplicate.original, []).append(duplicate)
        count += 1
    shown = PER_GROUP_ALONE if filters.original else PER_GROUP
    groups = []
    for original, duplicates in grouped.items():
        ordered = sorted(duplicates, key=lambda d: (d.score, d.id))
        groups.append(Group(original, tuple(ordered[:shown]), max(0, len(ordered) - shown)))
    if filters.order == "-score":
        groups.sort(key=lambda g: (-max(d.score for d in g.duplicates), g.original))
    elif filters.order == "newest":
        groups.sort(key=lambda g: (-g.newest_ms, g.original))
    else:
        groups.sort(key=lambda g: (g.lowest_score, g.original))
    start = (filters.page - 1) * per_page
    return Page(filters, tuple(groups[start : start + per_page]), len(groups), count, per_page)


def with_reviews(page: Page, verdicts: Mapping[str, Iterable[str]], promoted: Mapping[str, str] | None = None) -> Page:
    """The page with each duplicate's review verdict (``confirmed``) filled in from ``{id: verdicts}``, and each
    promoted original's reason from ``promoted`` (``{original: the original it replaced}``)."""

    def reviewed(d: Duplicate) -> Duplicate:
        return replace(d, reviewed="confirmed" if "confirmed" in verdicts.get(d.id, ()) else "")

    why = promoted or {}
    groups = tuple(
        Group(g.original, tuple(reviewed(d) for d in g.duplicates), g.more, why.get(g.original, ""))
        for g in page.groups
    )
    return replace(page, groups=groups)


def _score(params: Mapping[str, str], name: str) -> float | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadFilterError(f"{name}: {raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise BadFilterError(f"{name}: must be between 0 and 1")
    return value


def _page(raw: str) -> int:
    text = raw.strip()
    if not text:
        return 1
    # ASCII digits only (``isdigit`` takes "²", which ``int`` refuses), and few enough for ``int`` to take
    if not (text.isascii() and text.isdigit()) or int(text[:12]) < 1:
        raise BadFilterError(f"page: {raw[:40]!r} is not a page number")
    return min(int(text[:12]), 10**9)
