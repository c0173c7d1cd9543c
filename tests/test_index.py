"""The Milvus adapter against a real Milvus Lite and a real Milvus server (2.3.5): the three lookups, guarded
deletes, schema checks."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps
from pymilvus import DataType, MilvusClient

from tests.helpers import bit_views, bits, bits_apart, faint_wallpaper, light_icon, light_patchwork, server_index
from tooling.eval.transforms import crop, webp, zoom
from tooling.samples import brightened, photo
from worker import imaging
from worker.config import DEFAULT_PERCEPTUAL_THRESHOLD
from worker.decision import (
    BRIGHT,
    BRIGHT_HALF,
    DETAIL,
    UNTRIMMED,
    UNTRIMMED_MIRROR,
    Look,
    Signals,
    Thresholds,
    detail_similarities,
)
from worker.fingerprint import Fingerprint, fingerprint
from worker.guard import LAYOUT_BYTES, SHADE_BYTES, shades_apart
from worker.hash_rows import HashRows
from worker.index import FIRST_HITS, Index, IndexSchemaError
from worker.milvus import UNUSED_DIM, Milvus, scalar_index_of, unused_vector
from worker.originals import row as original_row
from worker.views import mixed_details

DIM = 8


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values + (0.0,) * (DIM - len(values)), dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def lite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("milvus") / "test.db")


@pytest.fixture(params=["lite", "server"])
def index(lite_uri: str, request: pytest.FixtureRequest) -> Iterator[Index]:
    """The collections on each engine: Milvus Lite (a collection per test), then a real Milvus server (PyPI
    ``milvus`` 2.3.5; one set of collections, emptied for each test)."""
    if request.param == "server":
        yield server_index(request.getfixturevalue("milvus_server"), "t_index", dim=DIM, search_limit=5)
        return
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:200]
    idx = Index.connect(lite_uri, collection=name, dim=DIM, search_limit=5)
    yield idx
    idx.close()


def sig(id_: str, t: int, sha: str, h: int, emb: np.ndarray) -> Signals:
    """An image whose perceptual descriptor is the 64-bit hash ``h``'s (:func:`tests.helpers.bits`)."""
    return Signals(id_, t, sha, bits(h), emb)


def test_neighbours_merges_exact_perceptual_and_semantic_lookups(index: Index) -> None:
    index.store(
        [
            sig("photos/a.jpg", 1, "sha-a", 0b0000, unit(1, 0)),
            sig("photos/b.jpg", 2, "sha-b", (1 << 64) - 1, unit(0, 1)),
        ]
    )
    query = sig("photos/q.jpg", 9, "sha-a", 0b0111, unit(1, 0.1))
    found = {n.id: n for n in index.neighbours([query])["photos/q.jpg"]}
    a, b = found["photos/a.jpg"], found["photos/b.jpg"]
    assert (a.event_time_ms, a.sha256) == (1, "sha-a")
    assert a.perceptual == pytest.approx(bits_apart(3), abs=1e-5)  # the descriptors' cosine
    assert a.cosine == pytest.approx(float(unit(1, 0.1) @ unit(1, 0)), abs=1e-5)
    assert b.sha256 == "sha-b"
    assert b.perceptual == pytest.approx(bits_apart(61), abs=1e-5)
    assert b.cosine == pytest.approx(float(unit(1, 0.1) @ unit(0, 1)), abs=1e-5)


def limits_asked(index: Index) -> list[tuple[str, int, int]]:
    """Record ``(collection, queries, limit)`` of every search the index makes from now on."""
    asked: list[tuple[str, int, int]] = []
    search = index._client.search

    def recording(collection: str, **kwargs: Any) -> Any:
        asked.append((collection, len(kwargs["data"]), kwargs["limit"]))
        return search(collection, **kwargs)

    index._client.search = recording
    return asked


def test_thresholds_fetch_fewer_rows_and_still_every_row_within_them(lite_uri: str) -> None:
    """With the decision's thresholds, each query first asks for FIRST_HITS rows; a query whose last row is still
    within the threshold is asked again for search_limit, so a crowd of close rows is found whole."""
    index = Index.connect(lite_uri, collection="t_within", dim=DIM, search_limit=10)
    try:
        close = [sig(f"photos/close-{i}.jpg", i, f"sha-c{i}", 1 << i, unit(1, i)) for i in range(7)]  # 1 bit away
        far = [sig(f"photos/far-{i}.jpg", 10 + i, f"sha-f{i}", ((1 << 40) - 1) << i, unit(i, 1)) for i in range(5)]
        index.store(close + far)
        within = Thresholds(perceptual=bits_apart(3), semantic=0.99)
        asked = limits_asked(index)
        crowded = sig("photos/q.jpg", 99, "sha-q", 0, unit(1, 0))
        found = {n.id: n.perceptual for n in index.neighbours([crowded], within)["photos/q.jpg"]}
        assert {key: found[key] for key in found if key.startswith("photos/close")} == pytest.approx(
            {c.id: bits_apart(1) for c in close}, abs=1e-5
        )
        assert asked[:2] == [("t_within_hashes", 1, FIRST_HITS), ("t_within_hashes", 1, 10)]
        assert asked[2] == ("t_within", 1, FIRST_HITS)  # its 4th cosine is below 0.99: no second search

        asked.clear()
        alone = sig("photos/r.jpg", 99, "sha-r", 0xF0F0F0F0F0F0F0F0, unit(0, 0, 1))
        assert all(
            n.perceptual is None or n.perceptual < bits_apart(3)
            for n in index.neighbours([alone], within)["photos/r.jpg"]
        )
        assert asked == [("t_within_hashes", 1, FIRST_HITS), ("t_within", 1, FIRST_HITS)]

        asked.clear()
        index.neighbours([alone])  # no thresholds: every search asks for search_limit
        assert asked == [("t_within_hashes", 1, 10), ("t_within", 1, 10)]
    finally:
        index.close()


def test_exact_lookup_finds_same_bytes_beyond_the_nearest_neighbours(index: Index) -> None:
    # Six rows whose perceptual hashes are closer to the query than the exact copy's: top-k alone would miss it.
    index.store([sig(f"photos/near{i}.jpg", i, f"sha-{i}", 1 << i, unit(1, i)) for i in range(6)])
    index.store([sig("photos/same.jpg", 10, "sha-same", (1 << 64) - 1, unit(0, 0, 1))])
    found = {n.id: n for n in index.neighbours([sig("photos/q.jpg", 20, "sha-same", 0, unit(1, 0))])["photos/q.jpg"]}
    assert found["photos/same.jpg"].sha256 == "sha-same"


def test_store_is_an_idempotent_upsert_and_count_sees_it(index: Index) -> None:
    row = sig("photos/a.jpg", 1, "sha-a", 5, unit(1))
    index.store([row])
    index.store([row])
    assert index.count() == 1
    assert index.event_times(["photos/a.jpg", "photos/missing.jpg"]) == {"photos/a.jpg": 1}


def test_discard_keeps_a_newer_upload_of_the_same_key(index: Index) -> None:
    index.store([sig("photos/k.jpg", 50, "sha-new", 5, unit(1))])
    index.discard([("photos/k.jpg", 10)])  # a stale removal event
    assert index.count() == 1
    index.discard([("photos/k.jpg", 50)])
    assert index.count() == 0


@pytest.mark.parametrize("key", ['quote"and\\backslash.jpg', "ünï çødé 📷.jpg", "a' or id != '.jpg"])
def test_ids_with_quotes_and_unicode_are_safe_in_filters(index: Index, key: str) -> None:
    index.store([sig(f"photos/{key}", 1, "sha", 5, unit(1)), sig("photos/other.jpg", 1, "sha2", 6, unit(2))])
    assert index.event_times([f"photos/{key}"]) == {f"photos/{key}": 1}
    index.discard([(f"photos/{key}", 1)])
    assert index.count() == 1


def test_a_collection_with_another_layout_is_refused(lite_uri: str) -> None:
    Index.connect(lite_uri, collection="layout", dim=DIM)
    with pytest.raises(IndexSchemaError, match=r"DEDUP_COLLECTION=layout: field 'embedding' should be a 16-d vector"):
        Index.connect(lite_uri, collection="layout", dim=16)


def test_links_record_each_duplicates_current_original(index: Index) -> None:
    index.link([("photos/d1.jpg", "photos/o.jpg", 5), ("photos/d2.jpg", "photos/o.jpg", 6)])
    index.link([("photos/d2.jpg", "photos/other.jpg", 6)])  # d2 was decided again: one link per duplicate
    assert index.dependents(["photos/o.jpg"]) == {"photos/d1.jpg": 5}
    assert index.dependents(["photos/o.jpg", "photos/other.jpg"]) == {"photos/d1.jpg": 5, "photos/d2.jpg": 6}
    index.unlink([("photos/d1.jpg", 4)])  # a stale event: the link is newer
    assert index.dependents(["photos/o.jpg"]) == {"photos/d1.jpg": 5}
    index.unlink([("photos/d1.jpg", 5)])
    assert index.dependents(["photos/o.jpg"]) == {}


def test_one_batched_search_finds_a_mirror_and_a_region_in_either_direction(index: Index) -> None:
    look = Look(
        variants=bit_views([0xF0F0, 0xAAAA, 1, 2, 3, 4, 5]), information=4.0, split=0.5, texture=0.6, colour=bytes(48)
    )
    index.store([Signals("photos/src.jpg", 1, "sha-src", bits(0x1234), unit(1), look=look)])
    mirrored = Signals(
        "photos/m.jpg", 2, "sha-m", bits(0xFFFF_0000), unit(2), look=replace(look, variants=bit_views([0x1234] * 7))
    )
    zoomed = Signals(
        "photos/z.jpg", 3, "sha-z", bits(0xAAAA), unit(3), look=replace(look, variants=bit_views([1 << 60] * 7))
    )
    found = index.neighbours([mirrored, zoomed])
    hit = {n.id: n for n in found["photos/m.jpg"]}["photos/src.jpg"]
    assert hit.perceptual == pytest.approx(1.0, abs=1e-5)
    assert hit.look is not None
    assert hit.look.information == pytest.approx(4.0)
    zoom_hit = {n.id: n for n in found["photos/z.jpg"]}["photos/src.jpg"]
    assert zoom_hit.perceptual == pytest.approx(1.0, abs=1e-5)  # whole ↔ stored region
    # The other direction: the region descriptor searched against a stored whole picture.
    index.store(
        [
            Signals(
                "photos/whole.jpg",
                4,
                "sha-w",
                bits(0xBEEF << 40),
                unit(4),
                look=replace(look, variants=bit_views([7] * 7)),
            )
        ]
    )
    crop = Signals(
        "photos/c.jpg",
        5,
        "sha-c",
        bits(99),
        unit(5),
        look=replace(look, variants=bit_views([8, 0xBEEF << 40, 9, 9, 9, 9, 9])),
    )
    crop_hit = {n.id: n for n in index.neighbours([crop])["photos/c.jpg"]}["photos/whole.jpg"]
    assert crop_hit.perceptual == pytest.approx(1.0, abs=1e-5)
    index.discard([("photos/src.jpg", 1)])
    assert "photos/src.jpg" not in {n.id for n in index.neighbours([mirrored])["photos/m.jpg"]}


def earlier_layout(id_length: int, *fields: tuple[str, DataType, dict[str, Any]]) -> Any:
    """A schema as an earlier version made it: a VARCHAR primary key, then ``(name, type, params)`` fields."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=id_length)
    for name, dtype, params in fields:
        schema.add_field(name, dtype, **params)
    return schema


TIME_AND_HASH: tuple[tuple[str, DataType, dict[str, Any]], ...] = (
    ("event_time_ms", DataType.INT64, {}),
    ("phash", DataType.FLOAT_VECTOR, {"dim": 64}),
)


def test_a_collection_of_an_earlier_version_is_refused_with_the_way_to_reindex(lite_uri: str) -> None:
    client = MilvusClient(uri=lite_uri)
    schema = earlier_layout(
        2048,
        ("sha256", DataType.VARCHAR, {"max_length": 64}),
        *TIME_AND_HASH,
        ("embedding", DataType.FLOAT_VECTOR, {"dim": DIM}),
    )
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="phash", index_type="FLAT", metric_type="L2")
    params.add_index(field_name="embedding", index_type="FLAT", metric_type="COSINE")
    client.create_collection("old_layout", schema=schema, index_params=params)
    client.close()
    with pytest.raises(
        IndexSchemaError, match=r"DEDUP_COLLECTION=old_layout: it was made by an earlier version.*backfill"
    ):
        Index.connect(lite_uri, collection="old_layout", dim=DIM)


#: Every field of the main collection as the version before descriptors made it: hash bits in ``phash``.
BITS_ERA: tuple[tuple[str, DataType, dict[str, Any]], ...] = (
    ("sha256", DataType.VARCHAR, {"max_length": 64}),
    *TIME_AND_HASH,
    ("embedding", DataType.FLOAT_VECTOR, {"dim": DIM}),
    *((name, DataType.FLOAT, {}) for name in ("information", "split", "texture")),
    ("colour", DataType.VARCHAR, {"max_length": 96}),
)


@pytest.mark.parametrize("metric", ["L2", "IP"])
def test_a_collection_of_hash_bits_is_refused_with_the_way_to_reindex(lite_uri: str, metric: str) -> None:
    """The version before descriptors had every field this one needs but stored hash bits (``phash``, a ±1
    vector) where this one stores a descriptor (``dct``): the two cannot be compared, so it is re-indexed."""
    name = f"bits_era_{metric.lower()}"
    client = MilvusClient(uri=lite_uri)
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="sha256", index_type="INVERTED")
    params.add_index(field_name="phash", index_type="HNSW", metric_type=metric, params={"M": 16, "efConstruction": 200})
    params.add_index(field_name="embedding", index_type="FLAT", metric_type="COSINE")
    client.create_collection(name, schema=earlier_layout(2048, *BITS_ERA), index_params=params)
    client.close()
    with pytest.raises(
        IndexSchemaError,
        match=rf"^DEDUP_COLLECTION={name}: it was made by an earlier version.*perceptual descriptors.*"
        rf"DEDUP_COLLECTION=<a new name> \(e\.g\. {name}_v2\).*backfill.*drop the old collections \({name}, ",
    ):
        Index.connect(lite_uri, collection=name, dim=DIM)


@pytest.mark.parametrize("metric", ["L2", "IP"])
def test_a_hashes_collection_of_hash_bits_is_refused_with_the_way_to_reindex(lite_uri: str, metric: str) -> None:
    """``<collection>_hashes`` of the versions before descriptors (searched by L2 or by inner product of ±1
    vectors) holds no descriptors either: refused too, not searched with the wrong vectors."""
    name = f"bits_era_only_hashes_{metric.lower()}"
    client = MilvusClient(uri=lite_uri)
    schema = earlier_layout(
        2056,
        ("owner", DataType.VARCHAR, {"max_length": 2048}),
        ("variant", DataType.INT64, {}),
        *TIME_AND_HASH,
        *((name, DataType.FLOAT, {}) for name in ("information", "split", "texture")),
        ("colour", DataType.VARCHAR, {"max_length": 96}),
    )
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="owner", index_type="INVERTED")
    params.add_index(field_name="phash", index_type="HNSW", metric_type=metric, params={"M": 16, "efConstruction": 200})
    client.create_collection(f"{name}_hashes", schema=schema, index_params=params, consistency_level="Strong")
    client.close()
    with pytest.raises(
        IndexSchemaError, match=rf"^DEDUP_COLLECTION={name}: it was made by an earlier version.*backfill"
    ):
        Index.connect(lite_uri, collection=name, dim=DIM)


def test_a_new_collection_stores_descriptors_searched_by_inner_product(index: Index) -> None:
    """Descriptors live in the hash rows, searched by inner product; every collection has one vector field (a Milvus
    2.3 server accepts no more)."""
    for collection in (index.collection, *index.companions):
        if index._client.has_collection(collection):
            described = index._client.describe_collection(collection)
            vectors = [f["name"] for f in described["fields"] if "dim" in f.get("params", {})]
            assert len(vectors) == 1, (collection, vectors)
    described = index._client.describe_collection(index.hashes_collection)
    dims = {f["name"]: f.get("params", {}).get("dim") for f in described["fields"]}
    assert "phash" not in dims
    assert int(dims["dct"]) == 64
    [name] = index._client.list_indexes(index.hashes_collection, field_name="dct")
    assert str(index._client.describe_index(index.hashes_collection, name)["metric_type"]).upper() == "IP"


@pytest.mark.parametrize(
    ("version", "kind"),
    [("milvus_lite-3.2.2", "INVERTED"), ("v2.4.0", "INVERTED"), ("v2.6.1", "INVERTED"), ("v2.3.5-lite", "Trie")],
)
def test_text_fields_get_the_index_their_server_has(version: str, kind: str) -> None:
    """An inverted index where the server has one (Lite, Milvus 2.4+); a Milvus 2.3 server has only ``Trie``."""
    assert scalar_index_of(version) == kind


def test_an_originals_collection_with_the_whole_pictures_descriptor_keeps_filling_it(lite_uri: str) -> None:
    """A collection made before the descriptors moved to the hash rows alone has a ``dct`` field on the originals
    too: it is opened as it is, its rows keep the field filled, and its originals are found as before."""
    name = "dct_on_originals"
    client = MilvusClient(uri=lite_uri)
    schema = earlier_layout(
        2048,
        ("sha256", DataType.VARCHAR, {"max_length": 64}),
        ("event_time_ms", DataType.INT64, {}),
        ("dct", DataType.FLOAT_VECTOR, {"dim": 64}),
        ("embedding", DataType.FLOAT_VECTOR, {"dim": DIM}),
        *((field, DataType.FLOAT, {}) for field in ("information", "split", "texture")),
        ("colour", DataType.VARCHAR, {"max_length": 102}),
    )
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="sha256", index_type="INVERTED")
    params.add_index(field_name="dct", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 200})
    params.add_index(field_name="embedding", index_type="HNSW", metric_type="COSINE", params={"M": 16})
    client.create_collection(name, schema=schema, index_params=params)
    HashRows(Milvus(client), f"{name}_hashes", search_limit=5).ensure(name)  # as that version made them
    client.close()
    index = Index.connect(lite_uri, collection=name, dim=DIM, search_limit=5)
    try:
        first = sig("photos/a.jpg", 1, "sha-a", 0b0000, unit(1))
        index.store([first])
        [stored] = index._client.query(name, filter='id == "photos/a.jpg"', output_fields=["dct"])
        assert first.dct is not None
        assert np.allclose(stored["dct"], first.dct, atol=1e-6)
        found = {n.id: n for n in index.neighbours([sig("photos/q.jpg", 9, "sha-a", 0b0111, unit(1))])["photos/q.jpg"]}
        assert found[first.id].sha256 == "sha-a"
        assert found[first.id].perceptual == pytest.approx(bits_apart(3), abs=1e-5)
    finally:
        index.close()


def test_an_original_without_a_descriptor_is_not_stored(index: Index) -> None:
    with pytest.raises(ValueError, match=r"photos/a\.jpg: an original needs its perceptual descriptor"):
        index.store([Signals("photos/a.jpg", 1, "sha-a", None, unit(1))])
    assert index.count() == 0


def test_real_valued_descriptors_come_back_as_their_cosine(index: Index) -> None:
    rng = np.random.default_rng(11)
    stored = rng.standard_normal(64)
    query = stored + 0.3 * rng.standard_normal(64)
    a = (stored / np.linalg.norm(stored)).astype(np.float32)
    q = (query / np.linalg.norm(query)).astype(np.float32)
    index.store([Signals("photos/a.jpg", 1, "sha-a", a, unit(1))])
    [hit] = index.neighbours([Signals("photos/q.jpg", 2, "sha-q", q, unit(0, 1))])["photos/q.jpg"]
    assert hit.id == "photos/a.jpg"
    assert hit.perceptual == pytest.approx(float(a @ q), abs=1e-5)
    assert 0.5 < float(a @ q) < 0.99  # neither the same nor unrelated: the value itself is carried


def test_the_batchs_own_rows_never_crowd_out_the_originals_it_needs(index: Index) -> None:
    """Re-checking stored originals: each one's own eleven hash rows lie nearest its queries, yet with room for
    five rows per query the other original is found."""
    look = Look(
        variants=bit_views(0x0F0F + i for i in range(11)), information=4.0, split=0.5, texture=0.6, colour=bytes(48)
    )
    first = Signals("photos/first.jpg", 1, "sha-1", bits(0x0F0F), unit(1), look=look)
    index.store([first])
    again = [Signals(f"photos/b{i}.jpg", 10 + i, f"sha-b{i}", bits(0x0F0F), unit(1), look=look) for i in range(3)]
    index.store(again)
    found = index.neighbours(again)
    for item in again:
        ids = {n.id for n in found[item.id]}
        assert "photos/first.jpg" in ids
        assert not ids & {s.id for s in again}, "the batch's own rows are left out: decide() ignores them"


def test_exact_lookup_answers_a_whole_batch_in_one_call(index: Index) -> None:
    index.store([sig("photos/a.jpg", 1, "sha-a", 1, unit(1)), sig("photos/b.jpg", 2, "sha-b", 2, unit(2))])
    found = index.exact(["sha-a", "sha-b", "sha-none"])
    assert {d: [n.id for n in rows] for d, rows in found.items()} == {
        "sha-a": ["photos/a.jpg"],
        "sha-b": ["photos/b.jpg"],
    }


def test_a_lite_file_held_by_another_process_says_how_to_share_one_milvus(tmp_path: Path) -> None:
    uri = str(tmp_path / "held.db")
    holder = Index.connect(uri, collection="held")
    try:
        second = subprocess.run(
            [sys.executable, "-c", f"from worker.index import Index; Index.connect({uri!r}, collection='held')"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.close()
    assert second.returncode != 0
    assert "milvus-lite server --data-dir" in second.stderr
    assert "DEDUP_MILVUS_URI=http://127.0.0.1:19530" in second.stderr


def test_stored_details_confirm_a_whole_against_region_pair_at_its_own_threshold(index: Index) -> None:
    """The index confirms each row it finds with the details stored beside it, at the threshold of the pair's kind
    (:func:`worker.decision.detail_floor`): a 10 % zoom of a 300-px picture is its source's central region up to
    the region's box; their details agree at 0.97, enough for a whole ↔ region pair but not for whole ↔ whole."""
    source = photo("gravel.png").copy()  # photo() is cached: never edit it in place
    source.thumbnail((300, 300))
    out = io.BytesIO()
    zoom(source, 0.10).save(out, "JPEG", quality=90)
    original, copy = fingerprint(source), fingerprint(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    index.store([Signals("photos/gravel.jpg", 1, "sha-o", original.dct, unit(1), look=original.look)])
    query = Signals("photos/zoomed.jpg", 2, "sha-z", copy.dct, unit(2), look=copy.look)
    within = Thresholds(perceptual=DEFAULT_PERCEPTUAL_THRESHOLD, semantic=None)

    [hit] = index.neighbours([query], within)["photos/zoomed.jpg"]
    assert hit.perceptual is not None
    assert hit.perceptual >= 0.99
    one_threshold = replace(within, detail_region=None)  # every pair at Thresholds.detail
    assert all(
        n.perceptual is None or n.perceptual < DEFAULT_PERCEPTUAL_THRESHOLD
        for n in index.neighbours([query], one_threshold)["photos/zoomed.jpg"]
    )


def test_a_faint_pictures_stored_details_keep_their_amplitude_for_the_noise_floor(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quiet view's details are stored at their amplitude (:data:`worker.views.QUIET_GAIN`), so the index
    confirms a faint picture's WebP copy at the floor re-encoding noise leaves (:func:`worker.views.pair_floor`),
    not at ``DETAIL``, which its details miss; a stored row read back is as quiet as it was written."""
    picture = imaging.decode(faint_wallpaper(1), max_pixels=10**8)
    original, copy = fingerprint(picture), fingerprint(imaging.decode(webp(picture), max_pixels=10**8))
    assert detail_similarities(original.look.details[:1], copy.look.details[:1])[0, 0] < DETAIL
    index.store([Signals("art/faint.png", 1, "sha-o", original.dct, unit(1), look=original.look)])
    assert _closest(index, copy.dct, copy.look) >= DEFAULT_PERCEPTUAL_THRESHOLD
    monkeypatch.setattr("worker.views.DETAIL_NOISE", 0.0)  # every pair held to its detail_floor, as before
    assert _closest(index, copy.dct, copy.look) < DEFAULT_PERCEPTUAL_THRESHOLD


def test_a_brightened_row_is_confirmed_with_its_pictures_untrimmed_details(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A light patchwork's copy brightened by 20 % meets the stored brightened row, whose details it matches only
    as a mix with the picture's untrimmed ones (:func:`worker.views.mixed`): the confirmation reads that row
    (here the whole picture's: nothing was trimmed) beside the brightened one. Either way round: the copy stored
    first, the source's own brightened view meets it."""

    def bright_alone(view: np.ndarray, rungs: list[np.ndarray]) -> float:  # the ladder: untrimmed, brightened
        return float(detail_similarities(view[None, :], rungs[1][None, :])[0, 0])

    _brightened_copy_found_either_way(index, monkeypatch, light_patchwork(3), {0, BRIGHT}, bright_alone)


def test_a_brightened_row_of_a_picture_with_a_half_rung_is_confirmed_with_all_three(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A light icon most of which clips stores its half-brightened view as a row of its own; a +20 % copy meets
    the brightened rows, and the confirmation reads the untrimmed (here the whole picture's) and both brightened
    rows to mix them (:func:`worker.views.mixed`). Either way round: the copy stored first, the source's own
    ladder is mixed. Without the half rung in the mix, the copy is not found. (Every pair is held to its
    :func:`~worker.views.detail_floor`: the generated icon's clipped views are quiet enough for the floor that
    re-encoding noise leaves to confirm them anyway.)"""
    monkeypatch.setattr("worker.views.DETAIL_NOISE", 0.0)

    def two_rungs(view: np.ndarray, rungs: list[np.ndarray]) -> float:
        return mixed_details(view, rungs[:2])

    _brightened_copy_found_either_way(index, monkeypatch, light_icon(3), {0, BRIGHT, BRIGHT_HALF}, two_rungs)


def _brightened_copy_found_either_way(
    index: Index,
    monkeypatch: pytest.MonkeyPatch,
    source: Image.Image,
    rows: set[int],
    weaker: Callable[[np.ndarray, list[np.ndarray]], float],
) -> None:
    """``source`` stored (with at least these ``rows``), its +20 % copy is found, and not when the confirmation
    mixes as ``weaker`` does; then the copy stored instead, the source is found, and not with ``weaker``."""
    original, copy = fingerprint(source), fingerprint(_jpeg(brightened(source, 1.2)))
    index.store([Signals("art/light.png", 1, "sha-o", original.dct, unit(1), look=original.look)])
    assert rows <= _variants(index, "art/light.png")
    assert _closest(index, copy.dct, copy.look) >= DEFAULT_PERCEPTUAL_THRESHOLD
    with monkeypatch.context() as patched:
        patched.setattr("worker.hash_rows.mixed_details", weaker)
        assert _closest(index, copy.dct, copy.look) < DEFAULT_PERCEPTUAL_THRESHOLD
    index.store([Signals("art/light-copy.jpg", 3, "sha-c", copy.dct, unit(3), look=copy.look)])
    index.discard([("art/light.png", 1)])
    assert _closest(index, original.dct, original.look) >= DEFAULT_PERCEPTUAL_THRESHOLD
    monkeypatch.setattr("worker.hash_rows.mixed_details", weaker)
    assert _closest(index, original.dct, original.look) < DEFAULT_PERCEPTUAL_THRESHOLD


def test_an_object_on_white_is_found_through_its_untrimmed_row(index: Index) -> None:
    """A disc on white is trimmed to the disc, to a fraction of a pixel that its half-size JPEG copy measures
    otherwise: the trimmed views' details fall out of step. The original's untrimmed view is stored as a row of
    its own and the copy's searched against it, so the one search finds the copy; a picture nothing was trimmed
    from stores no such row. (Two regions, the picture's as uploaded, find it as well, and so do the trimmed
    views' details once aligned, :mod:`worker.alignment`; here the untrimmed views search alone.)"""
    copy = _store_and_copy(index, "art/disc.png", _disc_on_white(), mirrored=False)
    assert _closest(index, copy.dct, copy.look) >= 0.99
    assert UNTRIMMED in _variants(index, "art/disc.png")
    original = fingerprint(_disc_on_white())
    assert detail_similarities(original.look.details[:1], copy.look.details[:1])[0, 0] < DETAIL  # out of step
    untrimmed_only = replace(copy.look, variants=copy.look.variants.copy())
    untrimmed_only.variants[: UNTRIMMED - 1] = -copy.dct  # no mirror, region or brightened view
    assert _closest(index, -copy.dct, untrimmed_only) >= 0.99  # and no whole picture either
    untrimmed_only.variants[UNTRIMMED - 1 :] = -copy.dct
    assert _closest(index, -copy.dct, untrimmed_only) < DEFAULT_PERCEPTUAL_THRESHOLD

    plain = fingerprint(photo("coffee.png"))
    index.store([Signals("photos/coffee.png", 3, "sha-p", plain.dct, unit(3), look=plain.look)])
    assert 0 in _variants(index, "photos/coffee.png")
    assert UNTRIMMED not in _variants(index, "photos/coffee.png")


def test_a_mirrored_object_on_white_is_found_through_its_untrimmed_mirror(index: Index) -> None:
    """The same for a mirrored copy: its untrimmed view's mirror is searched against the original's untrimmed row
    (and, like the mirror, never stored)."""
    copy = _store_and_copy(index, "art/mark.png", _disc_on_white(marked=True), mirrored=True)
    assert _closest(index, copy.dct, copy.look) >= 0.99
    assert UNTRIMMED_MIRROR not in _variants(index, "art/mark.png")
    without = replace(copy.look, variants=copy.look.variants.copy())
    without.variants[UNTRIMMED_MIRROR - 1] = -copy.dct
    assert _closest(index, copy.dct, without) < DEFAULT_PERCEPTUAL_THRESHOLD


def _store_and_copy(index: Index, key: str, art: Image.Image, *, mirrored: bool) -> Fingerprint:
    """Store ``art`` as the original ``key``; return the fingerprint of its half-size JPEG q75 copy (mirrored)."""
    out = io.BytesIO()
    (ImageOps.mirror(art) if mirrored else art).resize((300, 200), Image.Resampling.LANCZOS).save(
        out, "JPEG", quality=75
    )
    original, copy = fingerprint(art), fingerprint(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    index.store([Signals(key, 1, "sha-o", original.dct, unit(1), look=original.look)])
    return copy


def _closest(index: Index, dct: np.ndarray, look: Look) -> float:
    """The highest perceptual similarity the index finds for a copy with this descriptor and look (-1: none)."""
    within = Thresholds(perceptual=DEFAULT_PERCEPTUAL_THRESHOLD, semantic=None)
    found = index.neighbours([Signals("art/copy.jpg", 2, "sha-c", dct, unit(2), look=look)], within)
    return max((n.perceptual for n in found.get("art/copy.jpg", []) if n.perceptual is not None), default=-1.0)


def _jpeg(image: Image.Image) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _variants(index: Index, owner: str) -> set[int]:
    rows = index.milvus.query(index.hashes_collection, f'owner == "{owner}"', ["variant"])
    return {int(row["variant"]) for row in rows}


def _disc_on_white(*, marked: bool = False) -> Image.Image:
    """A red disc on white; ``marked``: with a yellow dot and a blue bar on it, so that its mirror differs."""
    out = Image.new("RGB", (600, 400), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    draw.ellipse((140, 40, 460, 360), fill=(190, 0, 40))
    if marked:
        draw.ellipse((190, 170, 250, 230), fill=(255, 230, 0))
        draw.rectangle((300, 250, 420, 280), fill=(20, 60, 170))
    return out


def test_a_cropped_object_on_white_is_found_through_the_regions_as_uploaded_either_way(index: Index) -> None:
    """A crop of a disc on white that cuts into the disc at the top and bottom and leaves white at the sides: the
    copy's untrimmed view is searched against the original's stored regions (of the picture as uploaded), and the
    original's regions against the copy's stored untrimmed row when the copy came first. Without its untrimmed
    views the copy is not found."""
    source = Image.new("RGB", (600, 400), (255, 255, 255))
    draw = ImageDraw.Draw(source)
    draw.ellipse((120, 20, 480, 380), fill=(190, 0, 40))
    draw.rectangle((300, 250, 420, 280), fill=(20, 60, 170))
    out = io.BytesIO()
    crop(source, 0.10).save(out, "JPEG", quality=90)
    original, copy = fingerprint(source), fingerprint(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    index.store([Signals("art/disc.png", 1, "sha-o", original.dct, unit(1), look=original.look)])
    assert _closest(index, copy.dct, copy.look) >= 0.99
    without = replace(copy.look, variants=copy.look.variants.copy())
    without.variants[UNTRIMMED - 1 :] = -copy.dct
    assert _closest(index, copy.dct, without) < DEFAULT_PERCEPTUAL_THRESHOLD

    index.store([Signals("art/first.jpg", 3, "sha-c", copy.dct, unit(3), look=copy.look)])
    assert UNTRIMMED in _variants(index, "art/first.jpg")
    within = Thresholds(perceptual=DEFAULT_PERCEPTUAL_THRESHOLD, semantic=None)
    later = Signals("art/later.png", 4, "sha-o", original.dct, unit(4), look=original.look)
    found = {n.id: n.perceptual for n in index.neighbours([later], within)["art/later.png"]}
    assert (found.get("art/first.jpg") or -1.0) >= 0.99


def test_a_collection_made_before_the_shade_keeps_layouts_alone_and_new_ones_store_the_shade(
    lite_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release before the shade made the colour field 96 characters long (the layout alone). A worker of
    this release starts on such a collection, stores the layout there without the shade, and reads it back as
    a layout the shade is not compared with (:func:`worker.guard.shades_apart`); a new collection keeps all of
    it."""
    look = fingerprint(photo("coffee.png")).look
    assert len(look.colour) == LAYOUT_BYTES + SHADE_BYTES
    item = Signals("p/coffee.png", 1, "sha-c", bits(5), unit(1), look=look)
    with monkeypatch.context() as earlier:
        earlier.setattr("worker.originals.COLOUR_HEX", 2 * LAYOUT_BYTES)
        Index.connect(lite_uri, collection="before_shade", dim=DIM).close()
    stored = {}
    for name in ("before_shade", "with_shade"):
        idx = Index.connect(lite_uri, collection=name, dim=DIM, search_limit=5)
        idx.store([item])
        [found] = idx.neighbours([replace(item, id="p/again.png", event_time_ms=2)])["p/again.png"]
        assert found.look is not None
        stored[name] = found.look.colour
        for collection in (idx.collection, idx.hashes_collection):
            [row] = idx.query(
                collection, 'owner == "p/coffee.png"' if collection.endswith("_hashes") else "", ["colour"]
            )[:1]
            assert len(row["colour"]) == len(stored[name]) * 2, collection
        idx.close()
    assert stored["before_shade"] == look.colour[:LAYOUT_BYTES]
    assert stored["with_shade"] == look.colour
    assert shades_apart(stored["before_shade"], look.colour) == (0.0, 0.0, 0.0)


def searched_fields(index: Index) -> list[str]:
    """Record the vector field of every search the index makes from now on."""
    fields: list[str] = []
    search = index._client.search

    def recording(collection: str, **kwargs: Any) -> Any:
        fields.append(kwargs["anns_field"])
        return search(collection, **kwargs)

    index._client.search = recording
    return fields


def test_perceptual_only_stores_the_constant_vector_and_never_searches_embeddings(lite_uri: str) -> None:
    index = Index.connect(lite_uri, collection="perceptual_only", dim=None, search_limit=5)
    try:
        fields = {f["name"]: f for f in index._client.describe_collection("perceptual_only")["fields"]}
        assert int(fields["embedding"]["params"]["dim"]) == UNUSED_DIM  # Milvus wants one vector field
        [name] = index._client.list_indexes("perceptual_only", field_name="embedding")
        described = index._client.describe_index("perceptual_only", name)
        assert (described["index_type"], str(described["metric_type"]).upper()) == ("FLAT", "L2")  # as the links'

        searched = searched_fields(index)
        index.store([Signals("photos/a.jpg", 1, "sha-a", bits(0b0000))])  # an original without an embedding
        [stored] = index.query("perceptual_only", 'id == "photos/a.jpg"', ["embedding"])
        assert [float(v) for v in stored["embedding"]] == unused_vector()
        # Even an image that came with an embedding is not searched by it: the index holds none to compare.
        query = Signals("photos/q.jpg", 9, "sha-q", bits(0b0111), unit(1, 0))
        hit = {n.id: n for n in index.neighbours([query])["photos/q.jpg"]}["photos/a.jpg"]
        assert hit.perceptual == pytest.approx(bits_apart(3), abs=1e-5)
        assert hit.cosine is None
        assert searched
        assert "embedding" not in searched
        with pytest.raises(ValueError, match="perceptual-only"):
            index.originals.nearest_embeddings([unused_vector()], "", None)
    finally:
        index.close()


@pytest.mark.parametrize(
    ("name", "made", "opened", "message"),
    [
        (
            "made_with_a_model",
            DIM,
            None,
            r"^DEDUP_COLLECTION=made_with_a_model: it was made with a model and holds embeddings, which "
            r"DEDUP_MODEL_WEIGHTS=none \(perceptual-only\) would leave out of date\. "
            r"Either set DEDUP_MODEL_WEIGHTS back .*"
            r"or set DEDUP_COLLECTION=<a new name> \(e\.g\. made_with_a_model_v2\).*backfill",
        ),
        (
            "made_perceptual_only",
            None,
            DIM,
            r"^DEDUP_COLLECTION=made_perceptual_only: it was made perceptual-only \(DEDUP_MODEL_WEIGHTS=none\) and "
            r"holds no embeddings for the semantic stage\. Either set DEDUP_MODEL_WEIGHTS=none again, or set "
            r"DEDUP_COLLECTION=<a new name>.*backfill.*so that every original is embedded",
        ),
    ],
)
def test_a_collection_made_in_the_other_mode_is_refused_saying_what_to_do(
    lite_uri: str, name: str, made: int | None, opened: int | None, message: str
) -> None:
    Index.connect(lite_uri, collection=name, dim=made).close()
    with pytest.raises(IndexSchemaError, match=message):
        Index.connect(lite_uri, collection=name, dim=opened)


def test_an_original_needs_its_embedding_unless_perceptual_only() -> None:
    item = Signals("photos/a.jpg", 1, "sha-a", bits(1))
    with pytest.raises(ValueError, match=r"photos/a\.jpg: an original needs its embedding"):
        original_row(item)
    assert original_row(item, semantic=False)["embedding"] == unused_vector()
    assert original_row(replace(item, embedding=unit(1)), semantic=False)["embedding"] == unused_vector()
    assert original_row(replace(item, embedding=unit(1)))["embedding"] == unit(1).tolist()
