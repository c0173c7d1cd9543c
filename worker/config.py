"""Configuration, read once from ``DEDUP_*`` environment variables.

Worker and producer share one :class:`Settings`; each reads the fields it needs. Invalid values fail at start
with a :class:`ConfigError` that names the variable::

    >>> import os
    >>> os.environ["DEDUP_BATCH_SIZE"] = "many"
    >>> load_settings()
    Traceback (most recent call last):
    ...
    worker.config.ConfigError: DEDUP_BATCH_SIZE: Input should be a valid integer, unable to parse string as an integer
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "DEDUP_"

#: Cosine similarity above which two ImageNet ResNet-50 features count as the same picture. Used only when
#: DEDUP_SEMANTIC_THRESHOLD is not set and the weights are real (never with random weights), and then nobody has
#: measured it on the operator's pictures: its matches are only suggested (``similar``), never moved
#: (:attr:`Settings.semantic_suggests_only`).
DEFAULT_SEMANTIC_THRESHOLD = 0.90

#: Smallest perceptual descriptor similarity (cosine) that still matches; chosen on the quality harness's tuning
#: fold (docs/quality.md).
DEFAULT_PERCEPTUAL_THRESHOLD = 0.90

#: Values that switch an optional stage off.
_OFF = {"", "off", "none", "disabled"}

#: ``DEDUP_MODEL_WEIGHTS`` of the perceptual-only mode: no model is loaded, no embedding stored or searched; only
#: the exact and perceptual stages decide.
NO_MODEL = "none"

#: Width of the ResNet-50 embedding the semantic stage stores (:mod:`worker.embedding`).
EMBEDDING_DIM = 2048


class Action(StrEnum):
    """What the worker does to a duplicate."""

    TAG = "tag"
    QUARANTINE = "quarantine"


class OnOriginalRemoved(StrEnum):
    """What happens to quarantined duplicates when their original is removed or overwritten with other bytes."""

    PROMOTE = "promote"  # the earliest is copied back (verified) and becomes the original; the rest follow it
    KEEP = "keep"  # all stay in quarantine ("deleting the original deletes the picture"); logged and counted


class DecodeMode(StrEnum):
    """Where JPEGs are decoded (:mod:`worker.device_decode`)."""

    AUTO = "auto"  # on the model's device when that is CUDA, else with Pillow
    PILLOW = "pillow"
    DEVICE = "device"  # on the model's device whatever it is (on the CPU: how the tests run the GPU path)


class CompileMode(StrEnum):
    """Whether and how the model is compiled with ``torch.compile`` (:class:`worker.embedding.Embedder`)."""

    OFF = "off"
    DEFAULT = "default"
    REDUCE_OVERHEAD = "reduce-overhead"  # CUDA graphs on a GPU
    MAX_AUTOTUNE = "max-autotune"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


def env_name(field: str) -> str:
    """The environment variable behind a settings field: ``batch_size`` → ``DEDUP_BATCH_SIZE``."""
    return ENV_PREFIX + field.upper()


class Settings(BaseSettings):
    """Every knob of the service. The README's configuration table lists the same fields."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Queue
    broker_url: str = "redis://localhost:6379/0"
    queue: str = "dedup"

    # Object storage
    s3_endpoint: str = "localhost:9000"
    s3_access_key: str = "minioadmin"  # dev default, like MinIO's own; set a real one in production
    s3_secret_key: str = Field(default="minioadmin", repr=False)  # dev default
    s3_secure: bool = False
    s3_region: str | None = None
    buckets: Annotated[tuple[str, ...], NoDecode] = ()

    # Index
    milvus_uri: str = "data/milvus-lite.db"
    milvus_token: str = Field(default="", repr=False)
    collection: str = "image_dedup"
    search_limit: int = Field(default=10, ge=1, le=1024)

    # Action
    action: Action = Action.TAG
    quarantine_bucket: str = "dedup-quarantine"
    on_original_removed: OnOriginalRemoved = OnOriginalRemoved.PROMOTE

    # Producer
    webhook_token: str = Field(default="", repr=False)
    webhook_allow_unauthenticated: bool = False
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    webhook_max_body_bytes: int = Field(default=1 << 20, ge=1024)
    sqs_queue_url: str = ""
    sqs_endpoint_url: str | None = None  # another SQS-compatible server (ElasticMQ, moto); None: AWS
    sqs_region: str | None = None  # None: the queue URL's region, else the AWS SDK's default
    sqs_wait_s: int = Field(default=20, ge=0, le=20)  # ReceiveMessage long poll

    # Review gallery (python -m producer review)
    review_token: str = Field(default="", repr=False)
    review_host: str = "127.0.0.1"
    review_port: int = Field(default=8090, ge=1, le=65535)
    review_snapshot_s: float = Field(default=5.0, ge=0.0, le=3600.0)

    # Model and batching
    model_weights: str = "imagenet"
    device: str = "auto"
    batch_size: int = Field(default=32, ge=1, le=1024)
    batch_wait_ms: int = Field(default=50, ge=0, le=60_000)
    decode: DecodeMode = DecodeMode.AUTO
    compile_mode: CompileMode = CompileMode.OFF

    # Detection thresholds
    perceptual_threshold: float | None = Field(default=DEFAULT_PERCEPTUAL_THRESHOLD, gt=0.0)
    semantic_threshold: float | None = Field(default=None, gt=0.0, le=1.0)

    # Input limits
    max_image_bytes: int = Field(default=50 << 20, ge=1)
    max_image_pixels: int = Field(default=100_000_000, ge=1)

    # Delivery
    max_retries: int = Field(default=10, ge=0)
    retry_backoff_max_s: int = Field(default=60, ge=1)
    max_deliveries: int = Field(default=5, ge=1)
    task_timeout_s: int = Field(default=300, ge=1)
    visibility_timeout_s: int = Field(default=3600, ge=1)

    # Observability
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    log_level: str = "INFO"

    @field_validator("buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("perceptual_threshold", "semantic_threshold", mode="before")
    @classmethod
    def _off_means_none(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in _OFF:
            return None
        return value

    @field_validator("perceptual_threshold")
    @classmethod
    def _a_cosine(cls, value: float | None) -> float | None:
        if value is not None and value > 1.0:
            raise ValueError(
                "a cosine similarity in (0, 1], e.g. 0.95; earlier versions took a number of hash bits here, "
                "which this version no longer uses"
            )
        return value

    @field_validator("decode", mode="before")
    @classmethod
    def _decode_any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("compile_mode", mode="before")
    @classmethod
    def _compile_any_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return CompileMode.OFF if value in _OFF else value
        return value

    @field_validator("model_weights")
    @classmethod
    def _weights_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                f"must be 'imagenet', 'random', the path of a weights file or '{NO_MODEL}' (perceptual-only)"
            )
        value = value.strip()
        return NO_MODEL if value.lower() == NO_MODEL else value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"auto", "cpu", "cuda", "mps"} and not value.startswith("cuda:"):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("milvus_uri")
    @classmethod
    def _milvus_uri(cls, value: str) -> str:
        if value.startswith(("http://", "https://", "tcp://", "unix:")) or value.endswith(".db"):
            return value
        raise ValueError("must be a Milvus Lite file ending in .db, or http(s)://host:19530 for a server")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.quarantine_bucket in self.buckets:
            raise ValueError(
                f"{env_name('quarantine_bucket')}={self.quarantine_bucket!r} is also in {env_name('buckets')}; "
                "the worker would process its own quarantine"
            )
        longest_wait = 2 * self.task_timeout_s + self.retry_backoff_max_s
        if self.visibility_timeout_s < longest_wait:
            raise ValueError(
                f"{env_name('visibility_timeout_s')}={self.visibility_timeout_s} must be at least "
                f"2 × {env_name('task_timeout_s')} + {env_name('retry_backoff_max_s')} = {longest_wait} s, "
                "or Redis redelivers messages that are still being worked on"
            )
        if self.perceptual_only and (conflicts := self._model_settings()):
            several = len(conflicts) > 1
            raise ValueError(
                f"{env_name('model_weights')}={NO_MODEL} loads no model (perceptual-only), but "
                f"{' and '.join(conflicts)} {'need' if several else 'needs'} one: "
                f"unset {'them' if several else 'it'}, or choose weights (imagenet or a weights file) to run the "
                "semantic stage"
            )
        return self

    def _model_settings(self) -> list[str]:
        """The settings given that only concern the model: ``NAME=value`` each."""
        given = []
        if self.semantic_threshold is not None:  # "off" agrees with perceptual-only
            given.append(f"{env_name('semantic_threshold')}={self.semantic_threshold}")
        if self.compile_mode is not CompileMode.OFF:
            given.append(f"{env_name('compile_mode')}={self.compile_mode.value}")
        if self.decode is DecodeMode.DEVICE:  # decodes on the model's device
            given.append(f"{env_name('decode')}={self.decode.value}")
        return given

    # Derived values -------------------------------------------------------------------------------------------

    @property
    def random_weights(self) -> bool:
        return self.model_weights.lower() in {"random", "noop"}

    @property
    def perceptual_only(self) -> bool:
        """``DEDUP_MODEL_WEIGHTS=none``: no model, no embeddings; the exact and perceptual stages decide alone."""
        return self.model_weights == NO_MODEL

    @property
    def embedding_dim(self) -> int | None:
        """The width of the embeddings the originals' collection holds; None: it holds none (perceptual-only)."""
        return None if self.perceptual_only else EMBEDDING_DIM

    @cached_property
    def effective_semantic_threshold(self) -> float | None:
        """The semantic stage's threshold, or None when the stage must not take part in decisions.

        Perceptual-only (``DEDUP_MODEL_WEIGHTS=none``) has no semantic stage at all. Otherwise an explicit
        ``DEDUP_SEMANTIC_THRESHOLD`` always wins; unset, real weights get :data:`DEFAULT_SEMANTIC_THRESHOLD` and
        random weights get None: their features are meaningless.
        """
        if self.perceptual_only:
            return None
        if "semantic_threshold" in self.model_fields_set:
            return self.semantic_threshold
        return None if self.random_weights else DEFAULT_SEMANTIC_THRESHOLD

    @property
    def semantic_suggests_only(self) -> bool:
        """Whether a semantic match only suggests (outcome ``similar``: tagged and shown, never moved) rather than
        makes a duplicate: when the stage takes part with the default threshold, which nobody chose. Setting
        ``DEDUP_SEMANTIC_THRESHOLD`` (after ``python -m tooling.eval`` on one's own pictures) makes them duplicates.
        """
        return "semantic_threshold" not in self.model_fields_set and self.effective_semantic_threshold is not None

    @property
    def webhook_tokens(self) -> tuple[str, ...]:
        """The webhook's accepted tokens: ``DEDUP_WEBHOOK_TOKEN``, comma-separated (several during a rotation)."""
        return tuple(part.strip() for part in self.webhook_token.split(",") if part.strip())

    @property
    def effective_review_token(self) -> str:
        """The review gallery's token: ``DEDUP_REVIEW_TOKEN``, else the webhook's first."""
        return self.review_token or next(iter(self.webhook_tokens), "")

    def bucket_allowed(self, bucket: str) -> bool:
        """Whether a bucket is on the ``DEDUP_BUCKETS`` allow-list (``*`` allows every bucket). The quarantine
        bucket never is: its copies would be quarantined again, and again."""
        if bucket == self.quarantine_bucket:
            return False
        return "*" in self.buckets or bucket in self.buckets

    def require_buckets(self) -> None:
        """Fail unless the allow-list names at least one bucket; both services call this at start."""
        if not self.buckets:
            raise ConfigError(f"{env_name('buckets')}: set the buckets to watch, comma-separated, or '*' for all")


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (and keyword overrides), turning validation errors into a
    :class:`ConfigError` that names the variable at fault."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = error.get("loc") or ()
        message = str(error.get("msg", "invalid"))
        if loc:
            lines.append(f"{env_name(str(loc[0]))}: {message}")
        else:  # a cross-field check: its message names the variables itself
            lines.append(message.removeprefix("Value error, "))
    return "; ".join(lines)
