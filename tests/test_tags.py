"""Tags: S3's character and size rules, and never dropping a user's own tags."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from worker.decision import Kind, Match, Status
from worker.outcome import Outcome
from worker.tags import MAX_TAGS, decode_value, encode_value, merge, outcome_from_tags, outcome_tags

S3_VALUE = re.compile(r"[A-Za-z0-9 +\-=._:/@]{0,256}")


@given(st.text(max_size=1100))
def test_any_key_becomes_a_legal_tag_value_that_decodes_back(value: str) -> None:
    encoded = encode_value(value)
    assert S3_VALUE.fullmatch(encoded), encoded
    decoded = decode_value(encoded)
    assert decoded is None or decoded == value
    if len(value.encode()) <= 180:
        assert decoded == value


def test_plain_keys_are_kept_readable() -> None:
    assert encode_value("photos/2024/IMG_0001.jpg") == "photos/2024/IMG_0001.jpg"
    assert encode_value("photos/a b+c=d@e:f.jpg") == "photos/a b+c=d@e:f.jpg"


def test_keys_with_other_characters_are_encoded() -> None:
    for key in ["photos/café.jpg", "photos/50%.jpg", "photos/a&b.jpg", "b64:looks-encoded"]:
        encoded = encode_value(key)
        assert encoded.startswith("b64:")
        assert decode_value(encoded) == key


def test_a_very_long_key_becomes_its_digest() -> None:
    assert encode_value("k" * 300).startswith("sha256:")


def test_outcome_tags() -> None:
    duplicate = Outcome.duplicate(Match("photos/cat.jpg", 1, Kind.PERCEPTUAL, 0.96875))
    assert outcome_tags(duplicate) == {
        "dedup-status": "duplicate",
        "dedup-of": "photos/cat.jpg",
        "dedup-kind": "perceptual",
        "dedup-score": "0.9688",
    }
    similar = Outcome.similar(Match("photos/cat.jpg", 1, Kind.SEMANTIC, 0.912))
    assert outcome_tags(similar) == {
        "dedup-status": "similar",
        "dedup-of": "photos/cat.jpg",
        "dedup-kind": "semantic",
        "dedup-score": "0.9120",
    }
    assert outcome_tags(Outcome.unique()) == {"dedup-status": "unique"}
    assert outcome_tags(Outcome.error("undecodable")) == {"dedup-status": "error", "dedup-reason": "undecodable"}


def test_tags_read_back_as_the_outcome_they_record() -> None:
    for outcome in (
        Outcome.unique(),
        Outcome.error("too_large"),
        Outcome.duplicate(Match("photos/café.jpg", 1, Kind.SEMANTIC, 0.9531)),
        Outcome.similar(Match("photos/café.jpg", 1, Kind.SEMANTIC, 0.9531)),
    ):
        assert outcome_from_tags({"owner": "ana", **outcome_tags(outcome)}) == outcome
    assert outcome_from_tags({"owner": "ana"}) is None
    assert outcome_from_tags({"dedup-status": "maybe"}) is None


def test_merge_keeps_user_tags_and_replaces_stale_dedup_tags() -> None:
    existing = {"owner": "ana", "dedup-status": "unique", "dedup-reason": "old"}
    ours = outcome_tags(Outcome.duplicate(Match("b/o", 1, Kind.EXACT, 1.0)))
    merged = merge(existing, ours)
    assert merged.tags == {"owner": "ana", **ours}
    assert merged.dropped == ()


def test_when_room_runs_out_our_least_important_tags_go_first() -> None:
    user = {f"user{i}": "x" for i in range(8)}
    ours = outcome_tags(Outcome.duplicate(Match("b/o", 1, Kind.EXACT, 1.0)))
    merged = merge(user, ours)
    assert len(merged.tags) == MAX_TAGS
    assert all(merged.tags[k] == v for k, v in user.items())
    assert set(merged.tags) - set(user) == {"dedup-status", "dedup-of"}
    assert merged.dropped == ("dedup-kind", "dedup-score")


def test_a_full_tag_set_is_left_alone() -> None:
    user = {f"user{i}": "x" for i in range(10)}
    merged = merge(user, {"dedup-status": "unique"})
    assert merged.tags == user
    assert merged.dropped == ("dedup-status",)


def test_dedup_promoted_stays_while_the_object_is_unique_and_goes_when_it_is_a_duplicate() -> None:
    promoted = {"owner": "ann", "dedup-status": "unique", "dedup-promoted": "original_removed"}
    again = merge(promoted, outcome_tags(Outcome.unique())).tags  # its copy-back's own event, a replay
    assert again == promoted
    alike = merge(promoted, outcome_tags(Outcome.similar(Match("photos/a.jpg", 1, Kind.SEMANTIC, 0.93)))).tags
    assert alike["dedup-promoted"] == "original_removed"  # a similar is still an original
    demoted = merge(promoted, outcome_tags(Outcome(Status.DUPLICATE, original="photos/a.jpg"))).tags
    assert "dedup-promoted" not in demoted
    assert demoted["owner"] == "ann"
    assert demoted["dedup-of"] == "photos/a.jpg"
