"""Configuration: defaults, parsing, and errors that name the environment variable."""

from __future__ import annotations

import pytest

from worker.config import (
    DEFAULT_PERCEPTUAL_THRESHOLD,
    DEFAULT_SEMANTIC_THRESHOLD,
    Action,
    CompileMode,
    ConfigError,
    DecodeMode,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("DEDUP_"):
            monkeypatch.delenv(name)


def test_defaults_are_usable_on_embedded_services() -> None:
    s = load_settings()
    assert s.milvus_uri.endswith(".db")
    assert s.action is Action.TAG
    assert s.model_weights == "imagenet"
    # docs/quality/tune/report.json; tests/test_docs.py checks the two agree
    assert s.perceptual_threshold == DEFAULT_PERCEPTUAL_THRESHOLD
    assert isinstance(s.perceptual_threshold, float)
    assert 0.0 < s.perceptual_threshold <= 1.0  # a cosine
    assert s.effective_semantic_threshold == DEFAULT_SEMANTIC_THRESHOLD


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEDUP_BATCH_SIZE", "many"),
        ("DEDUP_BATCH_SIZE", "0"),
        ("DEDUP_ACTION", "delete"),
        ("DEDUP_S3_SECURE", "perhaps"),
        ("DEDUP_PERCEPTUAL_THRESHOLD", "65"),
        ("DEDUP_PERCEPTUAL_THRESHOLD", "3"),
        ("DEDUP_PERCEPTUAL_THRESHOLD", "1.01"),
        ("DEDUP_PERCEPTUAL_THRESHOLD", "0"),
        ("DEDUP_PERCEPTUAL_THRESHOLD", "-0.5"),
        ("DEDUP_PERCEPTUAL_THRESHOLD", "close"),
        ("DEDUP_SEMANTIC_THRESHOLD", "1.5"),
        ("DEDUP_MILVUS_URI", "milvus.sqlite"),
        ("DEDUP_DEVICE", "tpu"),
        ("DEDUP_DECODE", "gpu"),
        ("DEDUP_COMPILE_MODE", "fast"),
        ("DEDUP_METRICS_PORT", "70000"),
        ("DEDUP_LOG_LEVEL", "loud"),
        ("DEDUP_MODEL_WEIGHTS", " "),
    ],
)
def test_an_invalid_value_fails_naming_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        load_settings()


@pytest.mark.parametrize("bits", ["3", "6", "64"])
def test_a_perceptual_threshold_in_bits_is_refused_saying_it_is_now_a_cosine(
    monkeypatch: pytest.MonkeyPatch, bits: str
) -> None:
    monkeypatch.setenv("DEDUP_PERCEPTUAL_THRESHOLD", bits)
    with pytest.raises(ConfigError, match=r"^DEDUP_PERCEPTUAL_THRESHOLD: .*cosine.*bits"):
        load_settings()


@pytest.mark.parametrize(("value", "expected"), [("0.9", 0.9), ("1", 1.0), (" 0.975 ", 0.975)])
def test_a_perceptual_threshold_is_a_cosine(monkeypatch: pytest.MonkeyPatch, value: str, expected: float) -> None:
    monkeypatch.setenv("DEDUP_PERCEPTUAL_THRESHOLD", value)
    assert load_settings().perceptual_threshold == expected


def test_the_model_is_compiled_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().compile_mode is CompileMode.OFF
    monkeypatch.setenv("DEDUP_COMPILE_MODE", " Reduce-Overhead ")
    assert load_settings().compile_mode is CompileMode.REDUCE_OVERHEAD
    monkeypatch.setenv("DEDUP_COMPILE_MODE", "none")
    assert load_settings().compile_mode is CompileMode.OFF


def test_decoding_follows_the_model_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().decode is DecodeMode.AUTO
    monkeypatch.setenv("DEDUP_DECODE", " Device ")
    assert load_settings().decode is DecodeMode.DEVICE


def test_buckets_are_a_comma_separated_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEDUP_BUCKETS", " photos, uploads ,,")
    s = load_settings()
    assert s.buckets == ("photos", "uploads")
    assert s.bucket_allowed("uploads")
    assert not s.bucket_allowed("other")
    monkeypatch.setenv("DEDUP_BUCKETS", "*")
    assert load_settings().bucket_allowed("anything")
    assert not load_settings().bucket_allowed("dedup-quarantine"), "never the quarantine bucket"


def test_an_empty_allow_list_is_refused_by_the_services() -> None:
    with pytest.raises(ConfigError, match="DEDUP_BUCKETS"):
        load_settings().require_buckets()


def test_the_quarantine_bucket_cannot_be_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEDUP_BUCKETS", "photos,dedup-quarantine")
    with pytest.raises(ConfigError, match=r"DEDUP_QUARANTINE_BUCKET=.*DEDUP_BUCKETS"):
        load_settings()


def test_visibility_timeout_must_cover_the_longest_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEDUP_TASK_TIMEOUT_S", "300")
    monkeypatch.setenv("DEDUP_RETRY_BACKOFF_MAX_S", "60")
    monkeypatch.setenv("DEDUP_VISIBILITY_TIMEOUT_S", "600")
    with pytest.raises(ConfigError, match=r"DEDUP_VISIBILITY_TIMEOUT_S=600 .* 660 s"):
        load_settings()
    monkeypatch.setenv("DEDUP_VISIBILITY_TIMEOUT_S", "660")
    assert load_settings().visibility_timeout_s == 660


def test_random_weights_keep_the_semantic_stage_out_unless_its_threshold_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEDUP_MODEL_WEIGHTS", "random")
    assert load_settings().effective_semantic_threshold is None
    monkeypatch.setenv("DEDUP_SEMANTIC_THRESHOLD", "0.97")
    assert load_settings().effective_semantic_threshold == 0.97


def test_semantic_matches_only_suggest_under_the_default_threshold_with_real_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEDUP_MODEL_WEIGHTS", "imagenet")
    assert load_settings().semantic_suggests_only  # 0.90, which nobody measured: similar, never moved
    assert load_settings(model_weights="/models/resnet50.pth").semantic_suggests_only
    monkeypatch.setenv("DEDUP_SEMANTIC_THRESHOLD", "0.9")  # chosen by the operator, even if the same value
    assert not load_settings().semantic_suggests_only
    monkeypatch.setenv("DEDUP_SEMANTIC_THRESHOLD", "off")
    assert not load_settings().semantic_suggests_only
    monkeypatch.delenv("DEDUP_SEMANTIC_THRESHOLD")
    monkeypatch.setenv("DEDUP_MODEL_WEIGHTS", "random")  # the stage takes no part at all
    assert not load_settings().semantic_suggests_only


@pytest.mark.parametrize("off", ["off", "none", ""])
def test_a_stage_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, off: str) -> None:
    monkeypatch.setenv("DEDUP_PERCEPTUAL_THRESHOLD", off)
    monkeypatch.setenv("DEDUP_SEMANTIC_THRESHOLD", off)
    s = load_settings()
    assert s.perceptual_threshold is None
    assert s.effective_semantic_threshold is None


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEDUP_S3_SECRET_KEY", "hunter2-secret")
    monkeypatch.setenv("DEDUP_WEBHOOK_TOKEN", "token-secret")
    text = repr(load_settings())
    assert "hunter2-secret" not in text
    assert "token-secret" not in text


@pytest.mark.parametrize("weights", ["none", " None ", "NONE"])
def test_no_weights_mean_perceptual_only_without_a_semantic_stage(
    monkeypatch: pytest.MonkeyPatch, weights: str
) -> None:
    monkeypatch.setenv("DEDUP_MODEL_WEIGHTS", weights)
    s = load_settings()
    assert s.model_weights == "none"
    assert s.perceptual_only
    assert s.effective_semantic_threshold is None
    assert not s.semantic_suggests_only
    assert s.embedding_dim is None  # the originals hold no embeddings
    assert s.perceptual_threshold == DEFAULT_PERCEPTUAL_THRESHOLD  # the stage that decides is untouched
    for model in ("imagenet", "random", "/models/none.pth"):
        assert not load_settings(model_weights=model).perceptual_only
        assert load_settings(model_weights=model).embedding_dim == 2048


def test_perceptual_only_refuses_a_semantic_threshold_rather_than_ignore_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEDUP_MODEL_WEIGHTS", "none")
    monkeypatch.setenv("DEDUP_SEMANTIC_THRESHOLD", "0.95")
    with pytest.raises(
        ConfigError,
        match=r"^DEDUP_MODEL_WEIGHTS=none loads no model \(perceptual-only\), but DEDUP_SEMANTIC_THRESHOLD=0\.95 "
        r"needs one: unset it, or choose weights",
    ):
        load_settings()
    for off in ("off", ""):  # switched off agrees with no model
        monkeypatch.setenv("DEDUP_SEMANTIC_THRESHOLD", off)
        assert load_settings().effective_semantic_threshold is None


def test_perceptual_only_refuses_every_setting_that_only_a_model_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEDUP_MODEL_WEIGHTS", "none")
    monkeypatch.setenv("DEDUP_COMPILE_MODE", "default")
    monkeypatch.setenv("DEDUP_DECODE", "device")
    with pytest.raises(ConfigError, match=r"DEDUP_COMPILE_MODE=default and DEDUP_DECODE=device need one: unset them"):
        load_settings()
    monkeypatch.setenv("DEDUP_COMPILE_MODE", "off")
    monkeypatch.setenv("DEDUP_DECODE", "pillow")
    assert load_settings().perceptual_only
