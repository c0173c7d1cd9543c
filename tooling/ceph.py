"""A real Ceph RADOS Gateway on one machine, without containers: for the end-to-end test of RGW's own bucket
notifications (``tests/test_ceph.py``).

In a scratch folder it writes a ``ceph.conf`` (no cephx, one replica, everything on loopback), makes the keyring
and monmap, and starts in the foreground, each with a log file:

* ``ceph-mon`` (one monitor), ``ceph-mgr``, one BlueStore ``ceph-osd`` on a sparse file;
* ``radosgw`` (beast front end) and an S3 user.

:meth:`CephGateway.notify` creates a bucket and a notification topic (RGW's SNS-compatible API) that pushes the
bucket's ``s3:ObjectCreated:*`` and ``s3:ObjectRemoved:*`` events to a URL. Start-up takes about 5 s on two
cores. Every daemon started is stopped on exit, on failure too (its pid from ``run/`` as well, in case one forked
away). Debian 12 packages:
``apt-get install -y --no-install-recommends ceph-mon ceph-mgr ceph-osd radosgw ceph-common`` (16.2.15); a missing
one raises :class:`~tooling.localstack.MissingDependencyError`, so the test that needs it fails.

radosgw 16.2.15 aborts (SIGABRT) on a multi-object delete (``DeleteObjects``) in a bucket with a notification:
delete one object at a time.

    >>> with CephGateway(Path("/tmp/ceph")) as rgw:
    ...     rgw.notify("photos", "http://127.0.0.1:8080/minio/events/TOKEN")
    ...     rgw.storage().put("photos", "cat.jpg", data)
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

from tooling.localstack import (
    MissingDependencyError,
    Service,
    ServiceFailedError,
    Started,
    free_port,
    http_ok,
    listens,
)
from worker.storage import Storage, make_client

log = logging.getLogger(__name__)

APT_PACKAGES = ("ceph-mon", "ceph-mgr", "ceph-osd", "radosgw", "ceph-common")
INSTALL_HINT = f"install them with `apt-get install -y --no-install-recommends {' '.join(APT_PACKAGES)}`"
PROGRAMS = ("ceph", "ceph-authtool", "monmaptool", "ceph-mon", "ceph-mgr", "ceph-osd", "radosgw", "radosgw-admin")

REGION = "default"  # RGW's default zonegroup: the SNS API's region and the topic ARN's
ACCESS_KEY = "DEDUPCEPHACCESS"  # throw-away credentials of the gateway's one user
SECRET_KEY = "dedup-ceph-secret-key"  # noqa: S105
EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
_BIND_PORTS = 40  # ms_bind_port_min..max: the OSD's and mgr's messengers (about 10 are used)
_SOCKET_PATH_MAX = 100  # a Unix socket path must fit sockaddr_un (108 bytes): admin sockets live in run/

CONF = """\
[global]
fsid = {fsid}
mon_host = [v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]
mon_initial_members = a
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
auth_allow_insecure_global_id_reclaim = true
ms_mon_client_mode = crc
ms_bind_port_min = {bind_min}
ms_bind_port_max = {bind_max}
run_dir = {run}
admin_socket = {run}/$cluster-$name.asok
log_file = {root}/log/$cluster-$name.log
pid_file = {run}/$name.pid
keyring = {root}/keyring
crash_dir = {root}/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 5
osd_crush_chooseleaf_type = 0

[mon]
mon_data = {root}/mon.$id
mon_allow_pool_delete = true
# Commit map changes every 0.1 s, not every 1 s: each pool radosgw creates waits for a commit (start-up 16 s -> 5 s)
paxos_propose_interval = 0.1

[mgr]
mgr_data = {root}/mgr.$id

[osd]
osd_data = {root}/osd.$id
osd_objectstore = bluestore
bluestore_block_path = {root}/osd.$id/block.file
bluestore_block_create = true
bluestore_block_size = {osd_bytes}
bluestore_fsck_on_mount = false
osd_op_num_shards = 1
osd_op_num_threads_per_shard = 2
osd_memory_target = 1073741824
bluestore_cache_autotune = false
bluestore_cache_size = 268435456

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_data = {root}/rgw
rgw_dns_name = localhost
debug_rgw = {debug_rgw}
"""


class CephGateway(Started):
    """mon + mgr + one OSD + radosgw on loopback in ``root``; an S3 endpoint with one user."""

    def __init__(self, root: Path, *, osd_bytes: int = 2 << 30, debug_rgw: int = 1, timeout: float = 120.0) -> None:
        self.root = root.resolve()
        self.osd_bytes = osd_bytes  # a sparse file: BlueStore writes only what it uses
        self.debug_rgw = debug_rgw  # 1 logs failed notification pushes in log/ceph-client.rgw.a.log; 20 all
        self.timeout = timeout
        self.conf = self.root / "ceph.conf"
        self.logs = self.root / "log"
        self.run_dir = self.root / "run"
        self.fsid = ""
        self.mon_v2 = self.mon_v1 = self.rgw_port = 0
        self.services: list[Service] = []
        self._env = {**os.environ, "CEPH_CONF": str(self.conf)}
        self._ceph = "ceph"
        self.startup_s: float | None = None  # how long start() took
        self._short_run_dir: Path | None = None

    # Lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        programs = self._programs()
        self._ceph = programs["ceph"]
        self._configure()
        conf = ["-c", str(self.conf)]

        keyring, authtool = str(self.root / "keyring"), programs["ceph-authtool"]
        mon_key = ["-n", "mon.", "--cap", "mon", "allow *"]
        admin_key = ["-n", "client.admin", *(arg for cap in ("mon", "osd", "mgr") for arg in ("--cap", cap, "allow *"))]
        self._run([authtool, *conf, "--create-keyring", keyring, "--gen-key", *mon_key])
        self._run([authtool, *conf, keyring, "--gen-key", *admin_key])
        monmap = str(self.root / "monmap")
        mon_addrs = f"[v2:127.0.0.1:{self.mon_v2},v1:127.0.0.1:{self.mon_v1}]"
        self._run([programs["monmaptool"], "--create", "--fsid", self.fsid, "--addv", "a", mon_addrs, monmap])
        self._run([programs["ceph-mon"], *conf, "--mkfs", "-i", "a", "--monmap", monmap])
        self._daemon("ceph-mon.a", [programs["ceph-mon"], *conf, "-f", "-i", "a"], lambda: listens(self.mon_v2))
        # Nothing below needs the manager (pools are the monitor's): it comes up beside the OSD.
        self._daemon("ceph-mgr.x", [programs["ceph-mgr"], *conf, "-f", "-i", "x"], lambda: True)

        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid).strip()
        self._run([programs["ceph-osd"], *conf, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid])
        self._daemon(f"ceph-osd.{osd_id}", [programs["ceph-osd"], *conf, "-f", "-i", osd_id], self._osds_up)

        # radosgw creates its pools on start and answers HTTP once they are active.
        self._daemon(
            "ceph-client.rgw.a", [programs["radosgw"], *conf, "-f", "-n", "client.rgw.a"], lambda: http_ok(self.url)
        )
        user = ["--uid=dedup", "--display-name=dedup tests", f"--access-key={ACCESS_KEY}", f"--secret-key={SECRET_KEY}"]
        self._run([programs["radosgw-admin"], *conf, "user", "create", *user])
        self.startup_s = time.monotonic() - began
        log.info("Ceph RGW ready at %s in %.1f s", self.url, self.startup_s)

    def stop(self) -> None:
        """Stop the daemons, gateway first (an OSD stops at once while its monitor still answers); then any
        process named in ``run/*.pid`` that still runs with this ``ceph.conf``."""
        for service in reversed(self.services):
            try:
                service.stop(timeout=15)
            except Exception:  # keep stopping the others
                log.exception("could not stop %s", service.name)
        self.services.clear()
        for pid_file in self.run_dir.glob("*.pid") if self.run_dir.exists() else ():
            with suppress(ValueError, OSError):
                pid = int(pid_file.read_text().strip())
                if str(self.conf).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    log.warning("%s (pid %d) outlived its process: killing it", pid_file.stem, pid)
                    os.kill(pid, signal.SIGKILL)
        if self._short_run_dir is not None:
            shutil.rmtree(self._short_run_dir, ignore_errors=True)
            self._short_run_dir = None

    # The S3 side ----------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``host:port``, as ``DEDUP_S3_ENDPOINT`` takes it."""
        return f"127.0.0.1:{self.rgw_port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    access_key = ACCESS_KEY
    secret_key = SECRET_KEY
    region = REGION

    def storage(self, max_bytes: int = 1 << 30) -> Storage:
        return Storage(make_client(self.endpoint, ACCESS_KEY, SECRET_KEY, region=REGION), max_bytes=max_bytes)

    def client(self, service: str) -> Any:
        """A boto3 client (``"s3"``, ``"sns"``) for the gateway: SigV4, path-style, region ``default``."""
        import boto3  # the aws extra's: only this helper needs it
        from botocore.config import Config

        config = Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 2})
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=config,
        )

    def notify(
        self, bucket: str, push_endpoint: str, *, topic: str | None = None, events: Sequence[str] = EVENTS
    ) -> str:
        """Create ``bucket`` (if missing), a topic that POSTs to ``push_endpoint``, and the bucket's
        notification of ``events`` to it; returns the topic's ARN. The topic is not persistent: RGW posts each
        event once, before it answers the upload, and a push that fails (refused, or any answer but 2xx) is only
        logged, never sent again; the upload succeeds all the same."""
        self.storage().ensure_bucket(bucket)
        attributes = {"push-endpoint": push_endpoint, "persistent": "false"}
        created = self.client("sns").create_topic(Name=topic or f"{bucket}-events", Attributes=attributes)
        arn = str(created["TopicArn"])
        configuration = {"TopicConfigurations": [{"Id": f"{bucket}-dedup", "TopicArn": arn, "Events": list(events)}]}
        self.client("s3").put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
        return arn

    # Administration -------------------------------------------------------------------------------------------

    def ceph(self, *args: str, timeout: float = 30.0) -> str:
        """Run the ``ceph`` CLI against this cluster; returns its standard output."""
        return self._run([self._ceph, "-c", str(self.conf), "--connect-timeout", str(int(timeout)), *args], timeout)

    def daemon_log(self, name: str, lines: int = 40) -> str:
        """The last lines of a daemon's own log (``ceph-mon.a``, ``ceph-osd.0``, ``ceph-client.rgw.a``...)."""
        path = self.logs / f"ceph-{name.removeprefix('ceph-')}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # Internals ------------------------------------------------------------------------------------------------

    def _programs(self) -> dict[str, str]:
        found = {name: shutil.which(name) for name in PROGRAMS}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise MissingDependencyError(f"{', '.join(missing)} not found on PATH: {INSTALL_HINT}")
        return {name: path for name, path in found.items() if path is not None}

    def _configure(self) -> None:
        if self.root.exists() and any(self.root.iterdir()):
            raise FileExistsError(f"{self.root} is not empty: a new cluster needs an empty folder")
        for folder in ("log", "crash", "mon.a", "mgr.x", "osd.0", "rgw", "out"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        if len(str(self.run_dir / "ceph-client.rgw.a.asok")) > _SOCKET_PATH_MAX:
            self._short_run_dir = Path(tempfile.mkdtemp(prefix="ceph-run-"))
            self.run_dir.symlink_to(self._short_run_dir)
            run = self._short_run_dir
        else:
            self.run_dir.mkdir()
            run = self.run_dir
        self.fsid = str(uuid.uuid4())
        self.mon_v2, self.mon_v1, self.rgw_port = _distinct_free_ports(3)
        bind_min = _free_range(_BIND_PORTS, avoid={self.mon_v2, self.mon_v1, self.rgw_port})
        self.conf.write_text(
            CONF.format(
                fsid=self.fsid,
                mon_v2=self.mon_v2,
                mon_v1=self.mon_v1,
                bind_min=bind_min,
                bind_max=bind_min + _BIND_PORTS - 1,
                run=run,
                root=self.root,
                osd_bytes=self.osd_bytes,
                rgw_port=self.rgw_port,
                debug_rgw=self.debug_rgw,
            )
        )

    def _run(self, argv: list[str], timeout: float = 60.0) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self._env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ServiceFailedError(f"{' '.join(argv)} timed out after {timeout:.0f} s:\n{exc.output}") from None
        if done.returncode != 0:
            raise ServiceFailedError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
        return done.stdout

    def _daemon(self, name: str, argv: list[str], ready: Callable[[], bool]) -> Service:
        service = Service(name, argv, log_dir=self.root / "out", ready=ready, env=self._env, timeout=self.timeout)
        self.services.append(service)
        try:
            return service.start()
        except ServiceFailedError as exc:
            raise ServiceFailedError(f"{exc}\n--- log/{name}.log ---\n{self.daemon_log(name)}") from None

    def _osds_up(self) -> bool:
        try:
            status = json.loads(self.ceph("osd", "stat", "--format", "json", timeout=10))
        except (ServiceFailedError, ValueError):
            return False
        return int(status.get("num_up_osds", 0)) >= 1


def _bindable(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _free_range(size: int, avoid: set[int], low: int = 20000, high: int = 32000) -> int:
    """The first port of ``size`` consecutive free ports below Linux's ephemeral range (where
    :func:`~tooling.localstack.free_port` draws), at a random base so that two clusters seldom meet."""
    bases = list(range(low, high - size, size))
    random.shuffle(bases)
    for base in bases:
        ports = range(base, base + size)
        if not avoid.intersection(ports) and all(_bindable(port) for port in ports):
            return base
    raise ServiceFailedError(f"no {size} consecutive free ports between {low} and {high}")
