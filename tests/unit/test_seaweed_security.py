"""The local S3 server's SeaweedFS security files, without a server: what security.toml turns on, private modes,
new keys at every start, a certificate that names the loopback address, an identity file without keys."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import tomllib

from cryptography import x509

from eegcache.devtools import seaweed_security


def test_security_toml_locks_every_door_with_fresh_keys(tmp_path):
    first = seaweed_security.write(tmp_path, "127.0.0.1")
    conf = tomllib.loads((tmp_path / "security.toml").read_text())
    jwt = [
        conf["jwt"]["signing"],
        conf["jwt"]["signing"]["read"],
        conf["jwt"]["filer_signing"],
        conf["jwt"]["filer_signing"]["read"],
    ]
    assert all(len(section["key"]) == 64 for section in jwt) and len({s["key"] for s in jwt}) == 4
    assert conf["grpc"]["ca"] == str(first.ca)
    for name in ("master", "volume", "filer", "s3", "admin", "worker", "client"):
        assert conf["grpc"][name] == {"cert": str(first.cert), "key": str(first.key)}, name
    for name in ("master", "volume", "filer", "admin"):  # HTTPS that requires our client certificate
        assert conf["https"][name] == {"cert": str(first.cert), "key": str(first.key), "ca": str(first.ca)}, name
    assert conf["https"]["client"]["enabled"] is True
    assert conf["access"]["ui"] is False and conf["filer"]["expose_directory_metadata"]["enabled"] is False

    seaweed_security.write(tmp_path, "127.0.0.1")  # the next start: new signing keys
    again = tomllib.loads((tmp_path / "security.toml").read_text())
    assert again["jwt"]["signing"]["key"] != conf["jwt"]["signing"]["key"]


def test_every_file_is_private_and_the_ca_key_is_never_written(tmp_path):
    security = seaweed_security.write(tmp_path, "127.0.0.1")
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "s3-identities.json",
        "security.toml",
        "tls/ca.crt",
        "tls/node.crt",
        "tls/node.key",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert sum("PRIVATE KEY" in p.read_text() for p in files) == 1  # the node's; the CA's stays in memory
    node = x509.load_pem_x509_certificate(security.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(security.ca.read_bytes())
    node.verify_directly_issued_by(ca)
    names = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)


def test_the_identity_file_names_the_keys_by_variable_and_weed_gets_only_those(tmp_path):
    security = seaweed_security.write(tmp_path, "127.0.0.1")
    identities = json.loads((tmp_path / "s3-identities.json").read_text())["identities"]
    assert identities[0]["credentials"] == [
        {"accessKey": "${EEGCACHE_S3_ACCESS_KEY}", "secretKey": "${EEGCACHE_S3_SECRET_KEY}"}
    ]
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": "user-key",
        "WEED_JWT_SIGNING_KEY": "",
        "S3_BUCKET": "extra",
    }
    env = security.weed_env(environ, "id", "secret")
    assert env == {"PATH": environ["PATH"], "EEGCACHE_S3_ACCESS_KEY": "id", "EEGCACHE_S3_SECRET_KEY": "secret"}


def test_write_private_replaces_a_wide_file_with_a_private_one(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    seaweed_security.write_private(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o600
