"""make bench's own arithmetic and inputs (the runs themselves are the benchmark, not a test)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from tooling.bench import (
    CAMERA,
    CORES,
    Run,
    await_count,
    cpu_table,
    growth_table,
    make_camera_images,
    synthetic_originals,
)
from worker.config import DEFAULT_PERCEPTUAL_THRESHOLD
from worker.decision import BRIGHT, DESCRIPTOR_DIM
from worker.metrics import STAGES


def test_cpu_per_image_outside_decoding_and_the_model_and_what_the_cores_allow() -> None:
    stages = dict.fromkeys(STAGES, 0.0) | {"decode": 0.2, "embed": 0.1, "search": 0.3}
    run = Run(
        "no model",
        100,
        2.0,
        worker_cpu_s=1.5,
        stage_cpu_s=stages,
        server_cpu_s={"S3": 0.5, "Milvus Lite": 2.0},
        rechecks={"searched": 1.0, "skipped": 3.0},
    )
    assert run.rate == 50.0
    assert run.outside == 12.0  # (1.5 − 0.2 − 0.1) s over 100 images
    [head, _, row] = cpu_table([run])
    assert head.split(" | ")[-3:] == ["all processes", "cores allow", "re-checked |"]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[head.split(" | ").index("other")] == "9.0"  # worker CPU the stages do not account for
    assert cells[-3:] == ["40.0", f"{CORES * 1000 / 40:.0f}/s", "25%"]  # worker 15 + S3 5 + Milvus 20 ms an image


def test_camera_images_are_12_megapixel_jpegs_baseline_or_progressive() -> None:
    for progressive in (False, True):
        [data] = make_camera_images(1, progressive=progressive)
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.size) == ("JPEG", CAMERA)
            assert bool(image.info.get("progressive")) is progressive
        assert len(data) > 2 << 20  # camera-like weight, not a flat upscale


def test_waiting_for_the_last_image_asks_rarely_and_sees_the_end_soon() -> None:
    """100 images at 200/s: far fewer scrapes than a fixed 0.05 s poll would make, and the end seen soon after."""
    start = time.perf_counter()
    asked = []

    def count() -> float:
        asked.append(time.perf_counter())
        return min(100.0, (time.perf_counter() - start) * 200)

    await_count(count, 100, start)
    assert 0.5 <= asked[-1] - start < 0.8  # the end came at 0.5 s
    assert len(asked) <= 6  # 0.5 s of 0.05 s polls would be 10
    with pytest.raises(TimeoutError, match="0 of 1 images"):
        await_count(lambda: 0.0, 1, time.perf_counter(), timeout_s=0.2)


def test_synthetic_originals_carry_every_stored_hash_and_a_unit_embedding() -> None:
    batch = synthetic_originals(64, 3)
    assert [item.id for item in batch] == ["growth/00000064", "growth/00000065", "growth/00000066"]
    assert len({item.sha256 for item in batch}) == 3
    for item in batch:
        assert item.look is not None
        assert len(item.look.variants) == BRIGHT  # mirror, regions, brightened: the rows the worker stores
        assert item.embedding is not None
        assert float(np.linalg.norm(item.embedding)) == pytest.approx(1.0, abs=1e-5)
        assert item.dct is not None
        assert item.dct.shape == (DESCRIPTOR_DIM,)
        assert item.look.variants.shape == (BRIGHT, DESCRIPTOR_DIM)
        views = np.concatenate([item.dct[None, :], item.look.variants])
        assert np.linalg.norm(views, axis=1) == pytest.approx(np.ones(1 + BRIGHT), abs=1e-5)  # unit descriptors
    [again] = synthetic_originals(64, 1)
    assert again.dct is not None
    assert batch[0].dct is not None
    assert np.array_equal(again.dct, batch[0].dct)  # the same originals every run
    wholes = np.stack([item.dct for item in synthetic_originals(0, 200) if item.dct is not None])
    cosines = wholes @ wholes.T
    np.fill_diagonal(cosines, 0.0)
    assert cosines.max() < DEFAULT_PERCEPTUAL_THRESHOLD  # none near another: no original is a duplicate


def test_growth_table_has_a_row_per_step_and_a_column_per_engine_setting() -> None:
    table = growth_table({"tuned": [(320, 10.0), (640, 12.5)], "defaults": [(320, 11.0), (640, 20.25)]})
    assert table == [
        "| originals stored | tuned | defaults |",
        "|---|---|---|",
        "| 320 | 10.0 | 11.0 |",
        "| 640 | 12.5 | 20.2 |",
    ]
