"""The gallery's core (filters, grouping, order, pages) and its HTML, with hostile keys: no service needed."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest

from producer.gallery_app import render
from producer.gallery_pages import PER_GROUP, BadFilterError, Filters, paginate, with_reviews


def row(
    duplicate: str, original: str, score: float, kind: str = "perceptual", when: int = 1, action: str = "tag"
) -> dict[str, Any]:
    return {
        "id": duplicate,
        "original": original,
        "score": score,
        "kind": kind,
        "event_time_ms": when,
        "action": action,
    }


ROWS = [
    row("photos/a/1.jpg", "photos/o1.jpg", 0.97, when=5),
    row("photos/a/2.jpg", "photos/o1.jpg", 0.91, when=6),
    row("photos/b/3.jpg", "photos/o2.jpg", 1.0, "exact", when=9, action="quarantine"),
    row("other/a/4.jpg", "other/o3.jpg", 0.95, when=7),
]


def test_filters_keep_the_rows_that_pass_each_one_and_refuse_what_they_cannot_use() -> None:
    filters = Filters.parse({"bucket": "photos", "kind": "perceptual", "min_score": "0.9", "max_score": "0.95"})
    assert filters.keeps(row("photos/x.jpg", "photos/o.jpg", 0.93))
    assert not filters.keeps(row("photos/x.jpg", "photos/o.jpg", 0.96))
    assert not filters.keeps(row("photos/x.jpg", "photos/o.jpg", 0.89))
    assert not filters.keeps(row("photos/x.jpg", "photos/o.jpg", 0.93, "exact"))
    assert not filters.keeps(row("photoss/x.jpg", "photos/o.jpg", 0.93))  # the bucket, not a prefix of it
    # bounds included, as Milvus hands back a score stored as a 32-bit float (0.9 → 0.8999999761581421)
    assert filters.keeps(row("photos/x.jpg", "photos/o.jpg", 0.8999999761581421))
    assert filters.keeps(row("photos/x.jpg", "photos/o.jpg", 0.949999988079071))
    assert all(Filters.parse({}).keeps(r) for r in ROWS)
    for bad in (
        {"bucket": 'x" or id != "'},
        {"bucket": "a%"},
        {"kind": "fuzzy"},
        {"min_score": "lots"},
        {"max_score": "2"},
        {"page": "0"},
        {"page": "-1"},
        {"order": "random"},
    ):
        with pytest.raises(BadFilterError):
            Filters.parse(bad)


def test_a_prefix_matches_keys_exactly_whatever_characters_they_hold() -> None:
    filters = Filters.parse({"prefix": "a_%/"})
    assert filters.keeps(row("photos/a_%/x.jpg", "photos/o.jpg", 0.9))  # no wildcard: an exact prefix
    assert not filters.keeps(row("photos/ab%/x.jpg", "photos/o.jpg", 0.9))


def test_groups_come_lowest_score_first_and_pages_cut_them() -> None:
    page = paginate(ROWS, Filters())
    assert [g.original for g in page.groups] == ["photos/o1.jpg", "other/o3.jpg", "photos/o2.jpg"]
    assert [d.id for d in page.groups[0].duplicates] == ["photos/a/2.jpg", "photos/a/1.jpg"]
    assert (page.total_groups, page.total_duplicates, page.pages) == (3, 4, 1)
    assert next(g.original for g in paginate(ROWS, Filters(order="newest")).groups) == "photos/o2.jpg"
    assert next(g.original for g in paginate(ROWS, Filters(order="-score")).groups) == "photos/o2.jpg"
    second = paginate(ROWS, Filters(page=2), per_page=2)
    assert ([g.original for g in second.groups], second.pages) == (["photos/o2.jpg"], 2)
    assert paginate(ROWS, Filters(page=9)).groups == ()
    assert paginate(ROWS, Filters(prefix="a/")).total_duplicates == 3  # any bucket, key prefix


def test_a_page_keeps_its_filters_in_its_links() -> None:
    filters = Filters.parse({"bucket": "photos", "prefix": "2024/ a&b", "max_score": "0.9"})
    assert filters.query(page=2) == "bucket=photos&prefix=2024%2F+a%26b&max_score=0.9&page=2"
    assert Filters.parse(dict(re.findall(r"(\w+)=([^&]*)", "page=3"))).page == 3


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.texts: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [value or "" for _, value in attrs]

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def test_hostile_keys_are_escaped_everywhere_the_page_shows_them() -> None:
    hostile = "photos/<script>alert('x')</script>\" onerror=\"alert(1)&amp;.jpg"
    page = with_reviews(paginate([row(hostile, "photos/<b>o</b>.jpg", 0.9)], Filters()), {hostile: ["confirmed"]})
    html = render(page, thumb=lambda i, w: "/thumb?id=" + i, page_url=str, static=False, token='t"<')
    assert "<script>" not in html
    assert "<b>" not in html
    parsed = _Collect()
    parsed.feed(html)
    assert "script" not in parsed.tags
    assert "b" not in parsed.tags
    assert hostile in "".join(parsed.texts)  # shown as the very text it is
    assert hostile in parsed.attributes  # data-id and the form's hidden id carry it intact
    assert 't"<' in parsed.attributes  # the token's hidden field too
    assert "confirmed" in "".join(parsed.texts)
    static = render(page, thumb=lambda i, w: "thumbs/x.jpg", page_url=str, static=True)
    assert "<form" not in static.split("</header>")[1]  # no buttons in an export: the command instead
    assert "python -m producer restore" in static


def test_a_large_group_shows_its_lowest_scores_and_links_to_itself_alone() -> None:
    crowd = [row(f"photos/c/{n:03d}.jpg", 'photos/"o".jpg', 0.9 + n / 1000) for n in range(30)]
    [group] = paginate(crowd, Filters()).groups
    assert (len(group.duplicates), group.more) == (PER_GROUP, 30 - PER_GROUP)
    assert group.duplicates[0].id == "photos/c/000.jpg"
    alone = Filters.parse({"original": 'photos/"o".jpg'})
    assert paginate(crowd + ROWS, alone).total_groups == 1
    assert paginate(crowd, alone).groups[0].more == 0
    html = render(paginate(crowd, Filters()), thumb=lambda i, w: "", page_url=str, static=False)
    assert "and 6 more" in html
    assert 'href="/?original=photos%2F%22o%22.jpg"' in html


def test_a_promoted_original_shows_as_an_original_with_why() -> None:
    rows = [row("photos/d/small.jpg", "photos/d/copy.jpg", 0.97, action="quarantine")]
    page = with_reviews(paginate(rows, Filters()), {}, {"photos/d/copy.jpg": "photos/o/<gone>.jpg"})
    assert page.groups[0].promoted_from == "photos/o/<gone>.jpg"
    html = render(page, thumb=lambda i, w: "", page_url=str, static=False)
    parsed = _Collect()
    parsed.feed(html)
    text = " ".join(" ".join(parsed.texts).split())
    assert "original photos/d/copy.jpg promoted from quarantine: its original photos/o/<gone>.jpg was removed" in text
    plain = render(paginate(rows, Filters()), thumb=lambda i, w: "", page_url=str, static=False)
    assert "promoted from quarantine" not in plain


def test_a_similar_shows_as_a_suggestion_left_in_place() -> None:
    rows = [
        row("photos/e/alike.jpg", "photos/e/o.jpg", 0.93, "semantic", action="suggest"),
        row("photos/e/moved.jpg", "photos/e/o.jpg", 0.99, "perceptual", action="quarantine"),
    ]
    page = paginate(rows, Filters())
    similar, duplicate = page.groups[0].duplicates
    assert (similar.suggested, duplicate.suggested) == (True, False)
    html = render(page, thumb=lambda i, w: f"/thumb?{w}={i}", page_url=str, static=False)
    parsed = _Collect()
    parsed.feed(html)
    text = " ".join(" ".join(parsed.texts).split())
    assert (
        "suggestion photos/e/alike.jpg semantic 0.9300 1970-01-01 00:00:00 UTC similar: not moved; "
        "a semantic match below a threshold nobody has measured" in text
    )
    assert html.count('<span class="suggestion">') == 1  # the quarantined duplicate is no suggestion
    assert "/thumb?bucket=photos/e/alike.jpg" in html  # its thumbnail comes from where it still is
    assert "/thumb?quarantine=photos/e/moved.jpg" in html
