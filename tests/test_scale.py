"""``make scale`` (tooling.scale): its inputs are real pictures' fingerprints, kept exactly through the cache, and a
small run through a real Milvus Lite server finds each upload's own original and nothing else."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tooling.samples import PHOTOS, photo, resized
from tooling.scale import inputs
from tooling.scale.run import measure
from worker.fingerprint import fingerprint


def test_a_filler_is_a_reproducible_crop_of_its_source_at_a_bounded_size() -> None:
    source = photo("astronaut.png").convert("RGB")
    first = inputs.filler(source, random.Random(5))
    assert inputs.filler(source, random.Random(5)).tobytes() == first.tobytes()
    assert inputs.filler(source, random.Random(6)).tobytes() != first.tobytes()
    sizes = [inputs.filler(source, random.Random(n)).size for n in range(40)]
    assert all(160 <= max(size) <= inputs.SOURCE_SIDE for size in sizes)
    assert len(set(sizes)) > 30  # random crops, not one picture forty times


def test_prints_come_back_from_the_cache_as_the_signals_they_were(tmp_path: Path) -> None:
    prints = [fingerprint(photo(name).convert("RGB")) for name in PHOTOS[:3]]
    rows = [(f"anchors/{n}", f"{n:064x}", fp, n) for n, fp in enumerate(prints)]
    inputs.Prints.of(rows).save(tmp_path / "a.npz")
    back = inputs.Prints.read(tmp_path / "a.npz").signals(first_time=10, embedding=8)
    assert [s.id for s in back] == ["anchors/0", "anchors/1", "anchors/2"]
    assert [s.event_time_ms for s in back] == [10, 11, 12]
    for signals, fp in zip(back, prints, strict=True):
        assert signals.dct is not None
        assert signals.look is not None
        assert signals.embedding is not None
        np.testing.assert_array_equal(signals.dct, fp.dct)
        np.testing.assert_array_equal(signals.look.variants, fp.look.variants)
        np.testing.assert_array_equal(signals.look.details, fp.look.details)
        assert signals.look.colour == fp.look.colour
        assert signals.look.information == pytest.approx(fp.look.information, rel=1e-6)  # stored as float32
        assert float(np.linalg.norm(signals.embedding)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["lite", "server"])
def test_a_small_index_finds_every_upload_as_a_copy_of_its_own_anchor(tmp_path: Path, engine: str) -> None:
    """On Milvus Lite and on a Milvus server (PyPI ``milvus`` 2.3.5): each measured in its own process."""
    names = PHOTOS[:6]
    anchors = inputs.Prints.of(
        [(f"anchors/{n}", f"{n:064x}", fingerprint(photo(name).convert("RGB")), n) for n, name in enumerate(names)]
    )
    uploads = inputs.Prints.of(
        [
            (f"uploads/{n}/half/{name}", f"{n + 100:064x}", fingerprint(resized(photo(name).convert("RGB"))), n)
            for n, name in enumerate(names)
        ]
    )
    sources = [photo(name).convert("RGB") for name in PHOTOS[6:12]]
    rng = random.Random(3)
    fillers = inputs.Prints.of(
        [(f"fillers/{n}", f"{n + 200:064x}", fingerprint(inputs.filler(sources[n % 6], rng)), -1) for n in range(30)]
    )
    result = measure(
        size=36,
        anchors=anchors,
        uploads=uploads,
        fillers=[fillers],
        folder=tmp_path / "scale",
        engine=engine,
    )
    assert result.originals == 36
    assert result.rows >= 36  # a hash row for each original's whole picture at least
    assert result.recall == 1.0
    assert result.false_duplicates == 0
    assert result.batches == 1
    assert result.latency_ms["p50"] > 0
    assert result.disk_bytes > 0
    assert result.peak_rss_bytes >= result.rss_bytes > 0
    assert result.recall_by_edit == {"half": 1.0}
    assert result.engine.startswith("v2.3.5" if engine == "server" else "milvus_lite")
    assert not running_from(tmp_path / "scale"), "the server outlived its measurement"


def running_from(folder: Path) -> list[str]:
    """The command lines of processes whose program or arguments lie in ``folder`` (the standalone server copies
    its binary there)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        if any(str(folder).encode() in arg for arg in argv):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found
