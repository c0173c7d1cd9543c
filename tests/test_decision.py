"""The decision core: ordering, in-batch duplicates, self-matches, idempotency and tie-breaks."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import bit_views, bits, bits_apart
from worker.decision import (
    LOW_INFORMATION,
    REGION_COUNT,
    SCORE_DIGITS,
    Decision,
    Kind,
    Look,
    Neighbour,
    Signals,
    Status,
    Thresholds,
    abstaining_stages,
    allowed,
    combined_similarity,
    decide,
    decide_or_defer,
    no_views,
    perceptual_similarity,
    similarity,
    views_of,
)

#: The perceptual threshold these tests use: hash descriptors at most 6 bits apart match (similarity 0.8125).
T = Thresholds(perceptual=bits_apart(6), semantic=None)


def sig(id_: str, t: int, sha: str = "", h: int = 0, emb: list[float] | None = None) -> Signals:
    """An image whose perceptual descriptor is that of the 64-bit hash ``h`` (:func:`tests.helpers.bits`)."""
    vector = None if emb is None else np.asarray(emb, dtype=np.float32)
    return Signals(id=id_, event_time_ms=t, sha256=sha or f"sha-{id_}", dct=bits(h), embedding=vector)


def by_id(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.id: d for d in decisions}


def test_similarity_of_hash_descriptors_counts_differing_bits() -> None:
    assert similarity(bits(0b1011), bits(0b1011)) == 1.0
    assert similarity(bits(0b1011), bits(0b0010)) == bits_apart(2) == 1 - 2 / 32
    assert similarity(bits(0), bits((1 << 64) - 1)) == -1.0
    assert similarity(bits(0), bits(1 << 63)) == bits_apart(1)  # the most significant bit counts too


def test_combined_similarity_is_the_best_view_or_the_second_best_region() -> None:
    regions = {2: 0.99, 5: 0.96, 7: 0.1}
    assert combined_similarity(0.5, regions) == 0.96  # two regions agree at 0.96
    assert combined_similarity(0.97, regions) == 0.97  # the view is closer
    assert combined_similarity(None, regions) == 0.96
    assert combined_similarity(0.3, {2: 0.99}) == 0.3  # one region alone does not count
    assert combined_similarity(None, {2: 0.99}) is None
    assert combined_similarity(None, {}) is None
    assert combined_similarity(-0.4, {}) == -0.4


def test_views_are_the_whole_descriptor_then_the_looks_rows() -> None:
    bare = sig("b/a", 1, h=5)
    assert bare.dct is not None
    whole = views_of(bare)
    assert whole is not None
    assert whole.shape == (1, 64)
    assert np.array_equal(whole[0], bare.dct)
    empty = views_of(replace(bare, look=Look(no_views())))  # an empty look: still the whole descriptor
    assert empty is not None
    assert np.array_equal(empty, whole)
    looked_at = views_of(replace(bare, look=Look(bit_views([1, 2, 3]))))
    assert looked_at is not None
    assert np.array_equal(looked_at, np.stack([bits(5), bits(1), bits(2), bits(3)]))
    assert views_of(Signals("b/n", 1, "s")) is None


def test_without_a_descriptor_there_is_no_perceptual_match() -> None:
    blank = Signals("b/a", 1, "s-a")
    described = sig("b/b", 2)
    assert perceptual_similarity(blank, described) is None
    assert perceptual_similarity(described, blank) is None
    assert perceptual_similarity(blank, blank) is None
    assert [d.status for d in decide([blank, Signals("b/c", 2, "s-c")], {}, T)] == [Status.UNIQUE] * 2
    assert decide([blank, described], {}, T)[1].is_unique


def test_exact_copy_of_an_earlier_indexed_original_is_a_duplicate() -> None:
    item = sig("b/copy", 20, sha="s1", h=0xFFFF)
    found = {"b/copy": [Neighbour("b/orig", 10, sha256="s1")]}
    [d] = decide([item], found, T)
    assert d.status is Status.DUPLICATE
    assert d.match is not None
    assert (d.match.original, d.match.kind, d.match.score) == ("b/orig", Kind.EXACT, 1.0)


def test_unrelated_image_is_unique() -> None:
    item = sig("b/x", 20, h=0)
    found = {"b/x": [Neighbour("b/far", 10, perceptual=bits_apart(30), cosine=0.2)]}
    [d] = decide([item], found, T)
    assert d == Decision("b/x", Status.UNIQUE)


def test_perceptual_threshold_is_inclusive() -> None:
    item = sig("b/x", 20)
    assert T.perceptual is not None
    at = decide([item], {"b/x": [Neighbour("b/o", 10, perceptual=T.perceptual)]}, T)[0]
    over = decide([item], {"b/x": [Neighbour("b/o", 10, perceptual=bits_apart(7))]}, T)[0]
    just_below = float(np.nextafter(T.perceptual, 0.0))
    below = decide([item], {"b/x": [Neighbour("b/o", 10, perceptual=just_below)]}, T)[0]
    assert at.status is Status.DUPLICATE
    assert at.match is not None
    assert at.match.kind is Kind.PERCEPTUAL
    assert at.match.score == pytest.approx(T.perceptual)  # the similarity itself
    assert over.status is Status.UNIQUE
    assert below.status is Status.UNIQUE


def test_a_perceptual_score_is_clamped_to_a_similarity() -> None:
    item = sig("b/x", 20)
    rounded_up = decide([item], {"b/x": [Neighbour("b/o", 10, perceptual=1.0000002)]}, T)[0]
    assert rounded_up.match is not None
    assert rounded_up.match.score == 1.0
    anything = Thresholds(perceptual=-1.0, semantic=None)
    opposite = decide([item], {"b/x": [Neighbour("b/o", 10, perceptual=-0.5)]}, anything)[0]
    assert opposite.match is not None
    assert opposite.match.score == 0.0


def test_a_stage_without_threshold_takes_no_part() -> None:
    item = sig("b/x", 20)
    found = {"b/x": [Neighbour("b/o", 10, perceptual=1.0, cosine=1.0)]}
    assert decide([item], found, Thresholds(perceptual=None, semantic=None))[0].status is Status.UNIQUE
    semantic_only = decide([item], found, Thresholds(perceptual=None, semantic=0.9))[0]
    assert semantic_only.match is not None
    assert semantic_only.match.kind is Kind.SEMANTIC


def test_semantic_threshold_is_inclusive_and_reports_cosine() -> None:
    item = sig("b/x", 20)
    t = Thresholds(perceptual=None, semantic=0.95)
    at = decide([item], {"b/x": [Neighbour("b/o", 10, cosine=0.95)]}, t)[0]
    below = decide([item], {"b/x": [Neighbour("b/o", 10, cosine=0.9499)]}, t)[0]
    assert at.match is not None
    assert at.match.score == pytest.approx(0.95)
    assert below.status is Status.UNIQUE


def test_only_earlier_originals_count_and_later_ones_are_superseded() -> None:
    item = sig("b/early", 5, sha="s1")
    found = {"b/early": [Neighbour("b/late", 50, sha256="s1"), Neighbour("b/unrelated", 60, perceptual=bits_apart(40))]}
    [d] = decide([item], found, T)
    assert d.status is Status.UNIQUE
    assert d.supersedes == ("b/late",)


def test_equal_event_times_are_ordered_by_id() -> None:
    item = sig("b/b", 10, sha="s1")
    [d] = decide([item], {"b/b": [Neighbour("b/a", 10, sha256="s1")]}, T)
    assert d.match is not None
    assert d.match.original == "b/a"
    [d2] = decide([sig("b/a", 10, sha="s1")], {"b/a": [Neighbour("b/b", 10, sha256="s1")]}, T)
    assert d2.status is Status.UNIQUE
    assert d2.supersedes == ("b/b",)


def test_a_redelivered_original_never_matches_itself() -> None:
    item = sig("b/orig", 10, sha="s1", h=7)
    found = {"b/orig": [Neighbour("b/orig", 10, sha256="s1", perceptual=1.0, cosine=1.0)]}
    assert decide([item], found, T) == [Decision("b/orig", Status.UNIQUE)]


def test_an_overwritten_key_is_decided_afresh() -> None:
    # The index still holds the key's old content; the new bytes look like another original.
    item = sig("b/k", 30, sha="new", h=0)
    found = {
        "b/k": [Neighbour("b/k", 10, sha256="old", perceptual=1.0), Neighbour("b/other", 20, perceptual=bits_apart(2))]
    }
    [d] = decide([item], found, T)
    assert d.match is not None
    assert d.match.original == "b/other"


def test_in_batch_duplicates_are_caught_whatever_the_batch_order() -> None:
    original = sig("b/a", 1, sha="s", h=0b1111)
    resized = sig("b/b", 2, sha="other", h=0b1110)
    copy = sig("b/c", 3, sha="s", h=0b1111)
    for batch in ([original, resized, copy], [copy, resized, original]):
        d = by_id(decide(batch, {}, T))
        assert d["b/a"].status is Status.UNIQUE
        assert d["b/b"].match is not None
        assert (d["b/b"].match.original, d["b/b"].match.kind) == ("b/a", Kind.PERCEPTUAL)
        assert d["b/c"].match is not None
        assert (d["b/c"].match.original, d["b/c"].match.kind) == ("b/a", Kind.EXACT)


def test_duplicates_are_never_candidates() -> None:
    # b is within 6 bits of a, c within 6 of b but 10 from a: c must not point at the duplicate b.
    assert perceptual_similarity(sig("b/c", 3, h=0b1111111111), sig("b/a", 1)) == bits_apart(10)
    a = sig("b/a", 1, h=0)
    b = sig("b/b", 2, h=0b11111)
    c = sig("b/c", 3, h=0b1111111111)
    d = by_id(decide([a, b, c], {}, T))
    assert d["b/b"].status is Status.DUPLICATE
    assert d["b/c"].status is Status.UNIQUE


def test_in_batch_semantic_matching_uses_the_dot_product() -> None:
    t = Thresholds(perceptual=None, semantic=0.9)
    a = sig("b/a", 1, h=0, emb=[1.0, 0.0])
    b = sig("b/b", 2, h=(1 << 64) - 1, emb=[0.96, 0.28])
    c = sig("b/c", 3, h=0, emb=[0.0, 1.0])
    d = by_id(decide([a, b, c], {}, t))
    assert d["b/b"].match is not None
    assert d["b/b"].match.kind is Kind.SEMANTIC
    assert d["b/b"].match.score == pytest.approx(0.96)
    assert d["b/c"].status is Status.UNIQUE


def test_a_suggested_semantic_match_leaves_the_image_an_original_that_later_copies_match() -> None:
    t = Thresholds(perceptual=bits_apart(6), semantic=0.9, semantic_suggests=True)
    a = sig("b/a", 1, h=0, emb=[1.0, 0.0])
    b = sig("b/b", 2, sha="sb", h=(1 << 64) - 1, emb=[0.96, 0.28])  # another picture, alike by embedding only
    copy = sig("b/copy", 3, sha="sb", h=(1 << 64) - 1, emb=[0.96, 0.28])  # b's very bytes
    d = by_id(decide([a, b, copy], {}, t))
    assert (d["b/b"].status, d["b/b"].match) == (Status.UNIQUE, None)
    assert d["b/b"].similar is not None
    assert (d["b/b"].similar.original, d["b/b"].similar.kind) == ("b/a", Kind.SEMANTIC)
    assert d["b/b"].similar.score == pytest.approx(0.96)
    # b is a candidate like any original: its exact copy is its duplicate (in this batch, as in a later one).
    assert d["b/copy"].match is not None
    assert (d["b/copy"].match.original, d["b/copy"].match.kind) == ("b/b", Kind.EXACT)
    stored = {"b/copy": [Neighbour("b/a", 1, cosine=0.96), Neighbour("b/b", 2, sha256="sb", cosine=1.0)]}
    later = decide([copy], stored, t)[0]
    assert later.match is not None
    assert (later.match.original, later.match.kind) == ("b/b", Kind.EXACT)
    # A stronger stage still makes a duplicate; without the flag the semantic match is one too.
    near = {"b/x": [Neighbour("b/a", 1, cosine=0.99), Neighbour("b/p", 2, perceptual=1.0)]}
    strong = decide([sig("b/x", 10)], near, t)[0]
    assert strong.match is not None
    assert (strong.status, strong.match.kind, strong.similar) == (Status.DUPLICATE, Kind.PERCEPTUAL, None)
    plain = decide([a, b], {}, replace(t, semantic_suggests=False))[1]
    assert plain.match is not None
    assert (plain.status, plain.match.kind, plain.similar) == (Status.DUPLICATE, Kind.SEMANTIC, None)


def test_exact_beats_a_closer_earlier_perceptual_match() -> None:
    item = sig("b/x", 100, sha="s")
    found = {"b/x": [Neighbour("b/p", 1, perceptual=1.0), Neighbour("b/e", 50, sha256="s")]}
    d = decide([item], found, T)[0]
    assert d.match is not None
    assert (d.match.original, d.match.kind) == ("b/e", Kind.EXACT)


def test_larger_similarity_wins_then_the_earliest_original() -> None:
    item = sig("b/x", 100)
    closer = {"b/x": [Neighbour("b/first", 1, perceptual=bits_apart(5)), Neighbour("b/closer", 2, perceptual=0.99)]}
    tie = {"b/x": [Neighbour("b/second", 2, perceptual=0.9), Neighbour("b/first", 1, perceptual=0.9)]}
    closer_match = decide([item], closer, T)[0].match
    tie_match = decide([item], tie, T)[0].match
    assert closer_match is not None
    assert tie_match is not None
    assert closer_match.original == "b/closer"
    assert closer_match.score == pytest.approx(0.99)
    assert tie_match.original == "b/first"


def test_a_neighbour_found_by_several_lookups_uses_its_strongest_stage() -> None:
    item = sig("b/x", 100, sha="s")
    found = {"b/x": [Neighbour("b/o", 1, sha256="s", perceptual=1.0, cosine=1.0)]}
    d = decide([item], found, Thresholds(perceptual=bits_apart(6), semantic=0.5))[0]
    assert d.match is not None
    assert d.match.kind is Kind.EXACT


def test_the_same_key_twice_in_a_batch_gets_one_decision_and_no_self_match() -> None:
    first = sig("b/k", 10, sha="s")
    replay = sig("b/k", 10, sha="s")
    assert decide([first, replay], {}, T) == [Decision("b/k", Status.UNIQUE)] * 2


def test_an_index_row_for_a_key_in_the_batch_is_ignored() -> None:
    # b/late is being decided again in this batch (superseded); its stale row must not influence b/early.
    early = sig("b/early", 1, sha="s")
    late = sig("b/late", 9, sha="s")
    found = {"b/early": [Neighbour("b/late", 9, sha256="s")], "b/late": [Neighbour("b/late", 9, sha256="s")]}
    d = by_id(decide([late, early], found, T))
    assert d["b/early"] == Decision("b/early", Status.UNIQUE)
    assert d["b/late"].match is not None
    assert d["b/late"].match.original == "b/early"


def test_recheck_after_a_concurrent_store_leaves_exactly_one_original() -> None:
    # Two workers stored near-identical a (t=1) and b (t=2) at once; each re-checks with the other visible.
    a, b = sig("b/a", 1, h=0), sig("b/b", 2, h=1)
    on_a = decide([a], {"b/a": [Neighbour("b/b", 2, perceptual=bits_apart(1))]}, T)[0]
    on_b = decide([b], {"b/b": [Neighbour("b/a", 1, perceptual=bits_apart(1))]}, T)[0]
    assert on_a.status is Status.UNIQUE
    assert on_a.supersedes == ("b/b",)
    assert on_b.status is Status.DUPLICATE


def test_an_image_without_embedding_is_decided_only_if_it_is_a_duplicate() -> None:
    copy = sig("b/copy", 20, sha="s1")  # the model was skipped: an exact copy of b/orig is indexed
    found = {"b/copy": [Neighbour("b/orig", 10, sha256="s1")]}
    decisions, deferred = decide_or_defer([copy], found, T)
    assert [d.status for d in decisions] == [Status.DUPLICATE]
    assert deferred == frozenset()


def test_an_image_without_embedding_that_is_no_duplicate_is_deferred_and_no_candidate() -> None:
    # b/orig's row is ignored (it is in the batch with other bytes), so the copy made for it matches nothing...
    orig = sig("b/orig", 10, sha="new", h=0xFFFF, emb=[1.0, 0.0])
    copy = sig("b/copy", 20, sha="s1", h=0)
    later = sig("b/later", 30, sha="s1", h=0, emb=[0.0, 1.0])  # ...and would have matched the copy
    found = {"b/copy": [Neighbour("b/orig", 10, sha256="s1")], "b/later": [Neighbour("b/orig", 10, sha256="s1")]}
    decisions, deferred = decide_or_defer([orig, copy, later], found, T)
    assert deferred == {"b/copy"}
    assert by_id(decisions) == {
        "b/orig": Decision("b/orig", Status.UNIQUE),
        "b/later": Decision("b/later", Status.UNIQUE),
    }
    # Deferral cascades: an image without embedding that only matched a deferred one is deferred too.
    other = sig("b/other", 25, sha="s1", h=0)
    decisions, deferred = decide_or_defer([orig, copy, other], found, T)
    assert deferred == {"b/copy", "b/other"}


def test_deciding_again_gives_the_same_answer() -> None:
    batch = [sig("b/a", 1, sha="s", h=3), sig("b/b", 2, sha="s"), sig("b/c", 3, h=40)]
    found = {"b/c": [Neighbour("b/z", 0, perceptual=bits_apart(1))]}
    assert decide(batch, found, T) == decide(list(batch), dict(found), T)


# Properties over random batches ------------------------------------------------------------------------------

items = st.builds(
    sig,
    st.sampled_from([f"b/{c}" for c in "abcdefgh"]),
    st.integers(0, 5),
    st.sampled_from(["s1", "s2", "s3", "s4", "s5"]),
    st.integers(0, 255),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(items, min_size=1, max_size=8, unique_by=lambda s: s.id), st.randoms())
def test_properties_of_any_batch(batch: list[Signals], rnd: object) -> None:
    decisions = by_id(decide(batch, {}, T))
    shuffled = list(batch)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert by_id(decide(shuffled, {}, T)) == decisions, "outcome depends on arrival order"

    signals = {s.id: s for s in batch}
    originals = [s for s in batch if decisions[s.id].is_unique]
    for d in decisions.values():
        if d.match is None:
            continue
        assert d.match.original != d.id
        assert decisions[d.match.original].is_unique, "points at a duplicate"
        assert signals[d.match.original].order < signals[d.id].order, "points at a later image"
    for i, x in enumerate(originals):
        for y in originals[i + 1 :]:
            assert x.sha256 != y.sha256
            found = perceptual_similarity(x, y)
            assert found is not None
            assert found < bits_apart(6), "two originals match each other"


#: A few unrelated unit descriptors that the real-valued items below are drawn near.
_BASES = np.linalg.qr(np.random.default_rng(3).standard_normal((64, 4)))[0].T.astype(np.float32)
REAL_T = Thresholds(perceptual=0.95, semantic=None)


@st.composite
def real_items(draw: st.DrawFn) -> Signals:
    """An image with a real-valued descriptor: one of the bases moved by a little, some or a lot of noise."""
    id_ = draw(st.sampled_from([f"b/{c}" for c in "abcdefgh"]))
    base = _BASES[draw(st.integers(0, len(_BASES) - 1))]
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(64)
    moved = base + draw(st.sampled_from([0.0, 0.02, 0.05, 0.2, 1.0])) * noise / 8
    dct = (moved / np.linalg.norm(moved)).astype(np.float32)
    t = draw(st.integers(0, 5))
    return Signals(id_, t, draw(st.sampled_from(["s1", "s2", "s3", "s4", "s5"])) + id_, dct)


@settings(max_examples=200, deadline=None)
@given(st.lists(real_items(), min_size=1, max_size=8, unique_by=lambda s: s.id), st.randoms())
def test_properties_of_any_batch_of_real_descriptors(batch: list[Signals], rnd: random.Random) -> None:
    decisions = by_id(decide(batch, {}, REAL_T))
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    assert by_id(decide(shuffled, {}, REAL_T)) == decisions, "outcome depends on arrival order"
    signals = {s.id: s for s in batch}
    for d in decisions.values():
        if d.match is None:
            continue
        assert d.match.kind is Kind.PERCEPTUAL
        assert decisions[d.match.original].is_unique, "points at a duplicate"
        assert signals[d.match.original].order < signals[d.id].order, "points at a later image"
        found = perceptual_similarity(signals[d.id], signals[d.match.original])
        assert found is not None
        assert d.match.score == round(min(1.0, found), SCORE_DIGITS)
        assert found >= 0.95
    originals = [s for s in batch if decisions[s.id].is_unique]
    for i, x in enumerate(originals):
        for y in originals[i + 1 :]:
            found = perceptual_similarity(x, y)
            assert found is not None
            assert found < 0.95, "two originals match each other"


# Guards and colour (rule 7) ------------------------------------------------------------------------------------

RICH = Look(
    variants=bit_views([0] * (1 + REGION_COUNT)),
    information=5.0,
    split=0.5,
    texture=0.8,
    colour=bytes([200, 160, 140] * 16),
)
FLAT = Look(
    variants=bit_views([0] * (1 + REGION_COUNT)),
    information=0.0,
    split=1.0,
    texture=0.0,
    colour=bytes([200, 160, 140] * 16),
)


def looked(id_: str, t: int, look: Look, h: int = 0) -> Signals:
    return Signals(id_, t, f"sha-{id_}", bits(h), look=look)


def test_a_low_information_pair_is_no_perceptual_duplicate_but_exact_bytes_still_are() -> None:
    thresholds = Thresholds(perceptual=bits_apart(5), semantic=None)
    red, blue = looked("b/red", 1, FLAT), looked("b/blue", 2, FLAT)
    first, second = decide([red, blue], {}, thresholds)
    assert (first.status, second.status) == (Status.UNIQUE, Status.UNIQUE)
    assert second.notes == (LOW_INFORMATION,)
    copy = Signals("b/copy", 3, "sha-b/red", bits(0), look=FLAT)
    (decision,) = decide(
        [copy], {"b/copy": [Neighbour("b/red", 1, sha256="sha-b/red", perceptual=1.0, look=FLAT)]}, thresholds
    )
    assert decision.match is not None
    assert decision.match.kind is Kind.EXACT
    assert abstaining_stages(copy, thresholds) == [Kind.PERCEPTUAL]


def test_one_low_information_side_is_enough_to_abstain() -> None:
    thresholds = Thresholds(perceptual=bits_apart(5), semantic=0.9)
    item = Signals("b/x", 2, "sx", bits(0), np.array([1.0, 0.0], dtype=np.float32), look=RICH)
    stored = Neighbour("b/o", 1, perceptual=1.0, cosine=1.0, look=FLAT)
    (decision,) = decide([item], {"b/x": [stored]}, thresholds)
    assert decision.is_unique
    assert decision.notes == ()
    rich = replace(stored, look=RICH)
    (decision,) = decide([item], {"b/x": [rich]}, thresholds)
    assert decision.match is not None
    assert decision.match.kind is Kind.PERCEPTUAL


def test_colourways_of_one_layout_are_different_pictures_but_a_grey_copy_is_not() -> None:
    thresholds = Thresholds(perceptual=bits_apart(5), semantic=None)
    red = looked("b/red", 1, RICH)
    blue = looked("b/blue", 2, replace(RICH, colour=bytes([200, 127, 0] * 16)))
    grey = looked("b/grey", 3, replace(RICH, colour=bytes([200, 127, 127] * 16)))
    decisions = decide([red, blue, grey], {}, thresholds)
    assert [d.status for d in decisions] == [Status.UNIQUE, Status.UNIQUE, Status.DUPLICATE]
    assert decisions[2].match is not None
    assert decisions[2].match.original == "b/red"


def test_a_mirror_or_a_region_matches_in_either_order_of_arrival() -> None:
    thresholds = Thresholds(perceptual=bits_apart(5), semantic=None)
    source_hash, mirror_hash, region_hash = 0, (1 << 64) - 1, 0x00FF00FF00FF00FF
    others = REGION_COUNT - 1
    source_look = replace(RICH, variants=bit_views([mirror_hash, region_hash, *(7,) * others]))
    copies = {
        "mirror": (mirror_hash, replace(RICH, variants=bit_views([source_hash, *(9,) * REGION_COUNT]))),
        "zoom": (region_hash, replace(RICH, variants=bit_views([11] * (1 + REGION_COUNT)))),
    }
    for name, (h, look) in copies.items():
        for source_time, copy_time in ((1, 2), (2, 1)):
            source = looked("b/src", source_time, source_look, h=source_hash)
            copy = looked(f"b/{name}", copy_time, look, h=h)
            assert similarity(bits(source_hash), bits(h)) < bits_apart(5), name  # the whole pictures are far
            first, second = sorted([source, copy], key=lambda s: s.event_time_ms)
            verdict = {d.id: d for d in decide([source, copy], {}, thresholds)}
            assert verdict[first.id].is_unique, name
            match = verdict[second.id].match
            assert match is not None, name
            assert match.original == first.id, name
    assert allowed(1, 0)
    assert not allowed(0, 1)
    assert allowed(2, 0)
    assert allowed(0, 2)
    assert allowed(2, 2)
    assert not allowed(2, 3)


def test_a_region_match_needs_two_regions_to_agree() -> None:
    thresholds = Thresholds(perceptual=bits_apart(5), semantic=None)
    rng = random.Random(7)  # unrelated 64-bit hashes are about 32 bits apart
    h = [rng.getrandbits(64) for _ in range(3 * (2 + REGION_COUNT))]
    n = 1 + REGION_COUNT  # hashes per look: the mirror and the regions
    source = looked("b/src", 1, replace(RICH, variants=bit_views(h[1 : 1 + n])), h=h[0])
    rest = h[1 + n :]
    one = looked(
        "b/one", 2, replace(RICH, variants=bit_views([rest[0], h[2], *rest[1 : n - 1]])), h=rest[n]
    )  # region 2
    rest = rest[n + 1 :]
    two = looked("b/two", 3, replace(RICH, variants=bit_views([rest[0], h[2], h[3], *rest[1 : n - 2]])), h=rest[n])
    one_sim, two_sim = perceptual_similarity(one, source), perceptual_similarity(two, source)
    assert one_sim is not None
    assert one_sim < bits_apart(5)
    assert two_sim == 1.0
    assert decide([source, one], {}, thresholds)[1].is_unique
    match = decide([source, two], {}, thresholds)[1].match
    assert match is not None
    assert match.original == "b/src"
