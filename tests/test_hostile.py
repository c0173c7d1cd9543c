"""Hostile and unusual uploads end to end (webhook → worker → tags), delivered in one burst with ordinary
photos: every broken object gets an ``error`` outcome with its reason, every valid but unusual one is decided,
and none of it changes what happens to its batch-mates."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.accounting import Ledger, uploaded
from tests.deployment import deploy
from tests.helpers import BUCKET, encoded, next_time_ms, png_header_only
from tooling.localstack import SECRET_KEY, WEBHOOK_TOKEN, LocalStack
from tooling.samples import Expect, Sample, jpeg, photo
from worker.decision import Status
from worker.messages import ObjectEvent

pytestmark = pytest.mark.integration

MAX_BYTES = 1_000_000


def broken(prefix: str) -> dict[str, tuple[bytes, str]]:
    """key → (bytes, the error reason they must get)."""
    whole = jpeg(photo("rocket.jpg"))
    noise = random.Random(7).randbytes
    return {
        f"{prefix}empty.jpg": (b"", "empty"),
        f"{prefix}truncated.jpg": (whole[: len(whole) // 2], "undecodable"),
        f"{prefix}random.jpg": (noise(4096), "undecodable"),
        f"{prefix}document.pdf": (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n", "undecodable"),
        f"{prefix}drawing.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "undecodable"),
        f"{prefix}bomb.png": (png_header_only(100_000, 100_000), "too_many_pixels"),
        f"{prefix}huge.jpg": (noise(MAX_BYTES + 1), "too_large"),
    }


def unusual(prefix: str) -> list[Sample]:
    """Valid images in unusual shapes, each of another photo, and an EXIF-rotated copy of an upright one."""
    camera = np.asarray(photo("camera.png").convert("L"), dtype=np.uint16) * 257
    palette = photo("chelsea.png").quantize(colors=64)
    frames = [photo("coffee.png"), photo("astronaut.png")]
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    upright = photo("coins.png")
    rotated = encoded(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes(), quality=95)
    made = {
        "sixteen-bit.png": encoded(Image.fromarray(camera), "PNG"),
        "cmyk.jpg": encoded(photo("retina.jpg").convert("CMYK"), "JPEG"),
        "palette.png": encoded(palette, "PNG", transparency=0),
        "animated.gif": encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100),
        "animated.webp": encoded(
            photo("moon.png"), "WEBP", save_all=True, append_images=[upright.resize((512, 512))], duration=100
        ),
        "one-pixel.png": encoded(Image.new("RGB", (1, 1), (40, 90, 200)), "PNG"),
        "upright.jpg": jpeg(upright, 95),
    }
    samples = [Sample(f"{prefix}{name}", data, "image/octet-stream", Expect("unique")) for name, data in made.items()]
    samples.append(Sample(f"{prefix}rotated.jpg", rotated, "image/jpeg", Expect("duplicate", f"{prefix}upright.jpg")))
    return samples


def test_hostile_input_gets_reasons_and_unusual_images_are_decided_without_hurting_batch_mates(
    stack: LocalStack, tmp_path: Path, prefix: str
) -> None:
    env = {"DEDUP_MAX_IMAGE_BYTES": str(MAX_BYTES), "DEDUP_BATCH_WAIT_MS": "500"}
    with deploy(stack, tmp_path, db=9, env=env) as d:
        ledger = Ledger.open(d)
        bad = broken(prefix)
        good = unusual(prefix)
        upright = next(s for s in good if s.key.endswith("upright.jpg"))
        sent = uploaded(d, [upright])
        d.deliver([s.event for s in sent])
        d.outcomes([s.event for s in sent])

        bad_samples = [Sample(key, data, "image/jpeg", Expect("error")) for key, (data, _) in bad.items()]
        burst = uploaded(d, [s for s in good if s is not upright] + bad_samples)
        gone = ObjectEvent(BUCKET, f"{prefix}deleted-before-read.jpg", next_time_ms())
        d.storage.put(BUCKET, gone.key, jpeg(photo("page.png")))
        d.storage.remove(BUCKET, gone.key)
        random.Random(3).shuffle(burst)
        d.deliver([s.event for s in burst] + [gone])

        outcomes = ledger.check(sent + burst, accepted=len(sent) + len(burst) + 1)
        reasons = {key: (outcomes[key].status, outcomes[key].reason) for key in bad}
        assert reasons == {key: (Status.ERROR, reason) for key, (_, reason) in bad.items()}
        for sample in good:
            assert sample.expect.matches(outcomes[sample.key], BUCKET), (sample.key, outcomes[sample.key])
            assert d.storage.get_tags(BUCKET, sample.key)["dedup-status"] == sample.expect.status
        assert d.storage.get_tags(BUCKET, f"{prefix}bomb.png") == {
            "dedup-status": "error",
            "dedup-reason": "too_many_pixels",
        }
        d.wait_for_metric('dedup_errors_total{job="worker",reason="not_found"}', 1)
        assert d.storage.stat(BUCKET, gone.key) is None  # and nothing was written for it
        assert d.worker.alive
        for log in (d.worker.log_text(), d.webhook.log_text()):  # secrets are never logged
            assert SECRET_KEY not in log
            assert WEBHOOK_TOKEN not in log
