"""The whole service on one machine, without Docker: for ``make demo``, ``make bench`` and the tests.

Starts real processes on loopback, each with a log file, and stops them in reverse order:

* ``redis-server`` (Debian package ``redis-server``) as the broker, ``noeviction``, no persistence;
* an S3 server: a real ``minio`` binary when one is on ``PATH``, otherwise moto's S3 server (``moto[server]``
  from PyPI), spoken to through the same ``minio`` client;
* Milvus Lite, embedded in the worker (a ``.db`` file in the stack's folder), or as a gRPC server that several
  workers share (:meth:`LocalStack.start_milvus`); or a real Milvus server, PyPI's ``milvus`` 2.3.5 (an embedded
  standalone server, older than the Milvus docker-compose runs: :meth:`LocalStack.start_milvus_server`);
* the producers (``python -m producer webhook``, ``python -m producer sqs``) and Celery workers
  (``celery -A worker worker``);
* moto's server as AWS itself (S3, SQS, SNS), for the SQS consumer (:meth:`LocalStack.start_aws`);
* optionally ``prometheus`` (Debian package), scraping the worker and the webhook.

A dependency that cannot be found raises :class:`MissingDependencyError`: a test that needs it fails.

    >>> with LocalStack(Path("/tmp/stack")) as stack:
    ...     stack.start_webhook()
    ...     stack.start_worker(env={"DEDUP_MODEL_WEIGHTS": "random"})
    ...     stack.storage().put("photos", "cat.jpg", data)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing, suppress
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from pymilvus import MilvusClient

from worker import lite
from worker.storage import Storage, make_client

log = logging.getLogger(__name__)

ACCESS_KEY = "dedup-local"  # local, throw-away credentials for the stack's own S3 server
SECRET_KEY = "dedup-local-secret"  # noqa: S105
WEBHOOK_TOKEN = "local-webhook-token"  # noqa: S105
DATABASES = 32  # Redis databases: tests give each deployment its own
BIN = Path(sys.executable).parent


def script(name: str, hint: str) -> str:
    """A console script of this interpreter's packages: beside it (a virtualenv), else on ``PATH`` (packages
    installed with ``pip --target``, as deploy/gpu/kit.sh does), else :func:`require`'s error with ``hint``."""
    beside = BIN / name
    return str(beside) if beside.exists() else require(name, hint)


class MissingDependencyError(RuntimeError):
    """A program the local stack needs is not installed; the message says how to install it."""


class ServiceFailedError(RuntimeError):
    """A service exited or did not become ready in time; the message ends with its log."""


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URLs we built
            return 200 <= int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def require(program: str, hint: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise MissingDependencyError(f"{program} not found on PATH: {hint}")
    return found


class Service:
    """A subprocess with a log file; :meth:`start` returns once ``ready()`` is true."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        log_dir: Path,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60.0,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = argv
        self.ready = ready
        self.env = dict(env) if env is not None else dict(os.environ)
        self.cwd = cwd
        self.timeout = timeout
        self.stop_signal = stop_signal
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
            )
        deadline = time.monotonic() + self.timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise ServiceFailedError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceFailedError(f"{self.name} not ready after {self.timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)
        log.info("%s ready (pid %d)", self.name, self.process.pid)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive and self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a Celery warm shutdown; or the service's own ``stop_signal``), then SIGKILL after ``timeout``;
        returns the exit code."""
        if self.process is None:
            return None
        if self.alive:
            self.signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run (a crash)."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Started:
    """A context manager over :meth:`start` and :meth:`stop`: what a failed start left running is stopped too."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()


class LocalStack(Started):
    """Redis + S3 (+ Prometheus) on loopback, and helpers to start the webhook and workers against them."""

    def __init__(self, root: Path, *, buckets: tuple[str, ...] = ("photos",), durable_redis: bool = False) -> None:
        self.root = root
        self.buckets = buckets
        self.durable_redis = durable_redis  # append-only file, fsync always: survives a restart, as in production
        self.logs = root / "logs"
        self.redis_port = free_port()
        self.s3_port = free_port()
        self.services: list[Service] = []

    # Lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.redis_service = self._start(self._redis())
        self.s3_service = self._start(self._s3())
        storage = self.storage()
        for bucket in self.buckets:
            storage.ensure_bucket(bucket)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()

    def _start(self, service: Service) -> Service:
        self.services.append(service)
        return service.start()

    def stop_service(self, service: Service) -> int | None:
        """Stop one service started by this stack (SIGTERM, then SIGKILL); returns its exit code."""
        if service in self.services:
            self.services.remove(service)
        return service.stop()

    def restart(self, service: Service, *, down_s: float = 0.0) -> None:
        """Stop a service (SIGTERM), leave it down ``down_s`` seconds, start it again on the same port."""
        service.stop()
        time.sleep(down_s)
        service.start()

    # Dependencies ---------------------------------------------------------------------------------------------

    def broker(self, db: int = 0) -> str:
        """The broker URL for a Redis database; services under test each take their own."""
        return f"redis://127.0.0.1:{self.redis_port}/{db}"

    @property
    def broker_url(self) -> str:
        return self.broker(0)

    @property
    def s3_endpoint(self) -> str:
        return f"127.0.0.1:{self.s3_port}"

    def redis(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.broker(db), decode_responses=True)

    def storage(self, max_bytes: int = 1 << 30) -> Storage:
        return Storage(make_client(self.s3_endpoint, ACCESS_KEY, SECRET_KEY), max_bytes=max_bytes)

    def _redis(self) -> Service:
        binary = require("redis-server", "install it with `apt-get install redis-server` (make test does)")
        data = self.root / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always"] if self.durable_redis else ["--appendonly", "no"]
        argv += ["--dir", str(data), "--maxmemory-policy", "noeviction", "--databases", str(DATABASES)]
        client = redis.Redis(port=self.redis_port, socket_timeout=1)
        return Service("redis", argv, log_dir=self.logs, ready=lambda: _pings(client))

    def _s3(self) -> Service:
        env = {**os.environ, "MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY}
        minio = shutil.which("minio")
        if minio:
            argv = [minio, "server", str(self.root / "minio"), "--address", self.s3_endpoint, "--quiet"]
            health = f"http://{self.s3_endpoint}/minio/health/live"
            return Service("s3-minio", argv, log_dir=self.logs, env=env, ready=lambda: http_ok(health))
        return self._moto("s3-moto", self.s3_port, "no S3 server: put a `minio` binary on PATH or ")

    def _moto(self, name: str, port: int, hint: str = "") -> Service:
        moto = script("moto_server", hint + "`pip install 'moto[server]'`")
        argv = [moto, "-H", "127.0.0.1", "-p", str(port)]
        return Service(name, argv, log_dir=self.logs, ready=lambda: http_ok(f"http://127.0.0.1:{port}/"))

    @property
    def s3_server(self) -> str:
        """``minio`` or ``moto``: which S3 server this stack runs."""
        return "minio" if shutil.which("minio") else "moto"

    # The service ----------------------------------------------------------------------------------------------

    def env(self, overrides: Mapping[str, str] | None = None, **more: str) -> dict[str, str]:
        """Environment for our processes: the stack's endpoints plus ``overrides`` (``DEDUP_*`` names)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUP_")}
        env.update(
            DEDUP_BROKER_URL=self.broker_url,
            DEDUP_S3_ENDPOINT=self.s3_endpoint,
            DEDUP_S3_ACCESS_KEY=ACCESS_KEY,
            DEDUP_S3_SECRET_KEY=SECRET_KEY,
            DEDUP_BUCKETS=",".join(self.buckets),
            DEDUP_MILVUS_URI=str(self.root / "milvus" / "milvus-lite.db"),
            DEDUP_WEBHOOK_TOKEN=WEBHOOK_TOKEN,
            DEDUP_METRICS_PORT="0",
            PYTHONUNBUFFERED="1",
        )
        env.update(overrides or {})
        env.update(more)
        return env

    def start_webhook(
        self, env: Mapping[str, str] | None = None, *, port: int | None = None, metrics_port: int = 0
    ) -> tuple[Service, str]:
        """Start ``python -m producer webhook``; returns it and its events URL."""
        port = port or free_port()
        argv = [sys.executable, "-m", "producer", "webhook", "--host", "127.0.0.1", "--port", str(port)]
        service = Service(
            f"webhook-{port}",
            argv,
            log_dir=self.logs,
            env=self.env({"DEDUP_METRICS_PORT": str(metrics_port), **(env or {})}),
            ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        )
        self._start(service)
        return service, f"http://127.0.0.1:{port}/minio/events"

    def start_sqs_consumer(
        self, queue_url: str, env: Mapping[str, str] | None = None, *, endpoint_url: str | None = None
    ) -> Service:
        """Start ``python -m producer sqs --queue queue_url``; ready once it consumes."""
        argv = [sys.executable, "-m", "producer", "sqs", "--queue", queue_url]
        argv += ["--endpoint-url", endpoint_url] if endpoint_url else []
        service = Service("sqs-consumer", argv, log_dir=self.logs, env=self.env(env), ready=lambda: False)
        service.ready = lambda: "consuming S3 notifications" in service.log_text()
        return self._start(service)

    def start_worker(
        self, name: str = "worker", env: Mapping[str, str] | None = None, *, timeout: float = 180.0
    ) -> Service:
        """Start ``celery -A worker worker``; ready once Celery logs that it consumes."""
        celery = script("celery", "install the service: pip install -c constraints.txt .")
        argv = [celery, "-A", "worker", "worker", "--loglevel", "INFO", "-n", f"{name}@%h"]
        argv += ["--without-mingle", "--without-gossip"]
        service = Service(name, argv, log_dir=self.logs, env=self.env(env), timeout=timeout, ready=lambda: False)
        service.ready = lambda: " ready." in service.log_text()
        return self._start(service)

    def start_aws(self) -> tuple[Service, str]:
        """Start moto's server, which answers for S3, SQS and SNS in one process and delivers S3 notifications to
        SQS and SNS (and SNS to SQS) as AWS does; returns it and its endpoint URL. For what needs AWS itself, not
        merely an S3 server."""
        port = free_port()
        return self._start(self._moto(f"aws-moto-{port}", port)), f"http://127.0.0.1:{port}"

    def start_prometheus(
        self,
        targets: Mapping[str, str | Sequence[str]],
        *,
        interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
    ) -> tuple[Service, str]:
        """Start Debian's ``prometheus`` scraping ``{job: "host:port" or ["host:port", ...]}`` and evaluating
        ``rule_files``, both every ``interval_s``; returns it and its base URL."""
        binary = require("prometheus", "install it with `apt-get install prometheus` (make test does)")
        port = free_port()
        config = self.root / f"prometheus-{port}.yml"
        every = f"{interval_s:g}s"
        jobs = [
            {"job_name": job, "static_configs": [{"targets": [target] if isinstance(target, str) else list(target)}]}
            for job, target in targets.items()
        ]
        document = {
            "global": {"scrape_interval": every, "evaluation_interval": every},
            "rule_files": [str(path.resolve()) for path in rule_files],
            "scrape_configs": jobs,
        }
        config.write_text(json.dumps(document, indent=2))  # JSON is YAML
        url = f"http://127.0.0.1:{port}"
        argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={self.root / f'prometheus-{port}'}"]
        argv += [f"--web.listen-address=127.0.0.1:{port}"]
        service = Service(f"prometheus-{port}", argv, log_dir=self.logs, ready=lambda: http_ok(f"{url}/-/ready"))
        return self._start(service), url

    def start_milvus(self, name: str = "milvus", *, engine: Mapping[str, str] | None = None) -> tuple[Service, str]:
        """Start a Milvus Lite gRPC server (``python -m milvus_lite server``), which several workers can share
        (an embedded ``.db`` file serves one process); returns it and its ``http://`` URI. It runs with this
        service's Lite settings (:mod:`worker.lite`); ``engine`` replaces them (``{}``: the engine's defaults)."""
        port = free_port()
        argv = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.root / name)]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        if engine is None:
            env = lite.environment()
        else:  # exactly these settings, over an environment without any of the service's own
            env = {k: v for k, v in os.environ.items() if k != lite.MEMTABLE_ENV} | dict(engine)
        service = Service(name, argv, log_dir=self.logs, ready=lambda: listens(port), env=env)
        return self._start(service), f"http://127.0.0.1:{port}"

    def start_milvus_server(self, name: str = "milvus-server") -> tuple[Service, str]:
        """Start a Milvus standalone server (``milvus-server``, PyPI ``milvus`` 2.3.5: Milvus itself with its
        embedded etcd and local storage, not Lite) on a free port; returns it and its ``http://`` URI. Ready when it
        answers a client, not merely its port (its coordinators come up after the proxy listens). One at a time on a
        machine: its embedded etcd's peer port (2380) is fixed, and a second server exits."""
        port = free_port()
        argv = [script("milvus-server", "pip install milvus==2.3.5"), "--data", str(self.root / name)]
        argv += ["--proxy-port", str(port), "--extra-config", "proxy.timeTickInterval=20"]
        uri = f"http://127.0.0.1:{port}"
        # SIGINT: the launcher stops the server it started (SIGTERM would leave it running, orphaned).
        service = Service(
            name, argv, log_dir=self.logs, ready=lambda: _answers(uri), timeout=180.0, stop_signal=signal.SIGINT
        )
        return self._start(service), uri

    def queue_drained(self, queue: str = "dedup", db: int = 0) -> bool:
        """No message waiting in the queue and none delivered but unacknowledged."""
        client = self.redis(db)
        return int(client.llen(queue)) == 0 and int(client.hlen("unacked")) == 0


def listens(port: int) -> bool:
    """Whether something accepts TCP connections on this loopback port."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _answers(uri: str) -> bool:
    """Whether a Milvus server at ``uri`` lists its collections (it is up, coordinators and all)."""
    if not listens(int(uri.rsplit(":", 1)[1])):
        return False
    try:
        client = MilvusClient(uri=uri, timeout=5)
    except Exception:  # not up yet, whatever the client says
        return False
    try:
        client.list_collections()
        return True
    except Exception:  # not up yet, whatever the client says
        return False
    finally:
        client.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
