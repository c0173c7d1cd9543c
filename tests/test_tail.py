"""eval.tail counts every pair of unrelated pictures that match, and bounds the rate when none does."""

from __future__ import annotations

import io

import pytest

from tooling.eval import tail
from tooling.eval.transforms import REGRESSION
from tooling.samples import photo
from worker.config import DEFAULT_PERCEPTUAL_THRESHOLD
from worker.decision import DETAIL


def png(name: str) -> bytes:
    out = io.BytesIO()
    photo(name).save(out, "PNG")
    return out.getvalue()


def test_poisson_upper_bounds() -> None:
    assert tail.poisson_upper(0) == pytest.approx(2.996, abs=1e-3)  # the "rule of three"
    assert tail.poisson_upper(10) == pytest.approx(16.96, abs=1e-2)


def test_every_pair_of_unrelated_items_is_scored_and_a_copy_under_another_name_is_counted() -> None:
    names = ["astronaut.png", "coffee.png", "chelsea.png"]
    sources = [(n, "photo", png(n)) for n in names]
    sources.append(("astronaut-again.png", "photo", png("astronaut.png")))  # labelled as another source
    items, prints = tail.build(sources, REGRESSION[:2], negatives=0)
    assert len(items) == 4 * 3  # each source, then its two copies
    result = tail.measure(items, prints, DEFAULT_PERCEPTUAL_THRESHOLD, detail=DETAIL)
    same_source = 4 * 3  # pairs within one source's three items
    assert result["negative_pairs"] == 12 * 11 // 2 - same_source
    assert result["recall"][f"{0.90:.2f}"] == 1.0  # every copy found by its own source
    # astronaut and "astronaut-again" are one picture: their 3 × 3 item pairs are the false pairs found
    assert result["at_threshold"] == 9
    rate, upper = tail.rate_at(result)
    assert rate == 9 / result["guarded_pairs"]
    assert upper > rate
    assert "astronaut" in result["closest"][0]["a"]
    assert "astronaut" in result["closest"][0]["b"]


def test_with_nothing_matching_the_rate_is_zero_and_its_bound_three_over_the_pairs() -> None:
    sources = [(n, "photo", png(n)) for n in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")]
    items, prints = tail.build(sources, REGRESSION[:1], negatives=0)
    result = tail.measure(items, prints, DEFAULT_PERCEPTUAL_THRESHOLD, detail=DETAIL)
    rate, upper = tail.rate_at(result)
    assert rate == 0.0
    assert upper == pytest.approx(tail.poisson_upper(0) / result["guarded_pairs"])
    assert "0 of" in tail.summary(result)
