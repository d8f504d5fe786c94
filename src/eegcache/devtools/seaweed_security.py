"""SeaweedFS's own security for the local S3 server: ``security.toml``, its TLS material and the S3 identities,
written into the server's state directory before every start (:mod:`eegcache.devtools.s3local` starts the server).

Every port ``weed mini`` opens is on 127.0.0.1, which every local user can reach, and only the S3 API checks the
access keys; so each other door is locked with SeaweedFS's own mechanisms:

- gRPC of master, volume server, filer, S3 gateway, admin and worker (TCP and weed's unix sockets in /tmp):
  mutual TLS with a CA made here. Without it anyone could list, read and create the filer's entries (the
  bucket's objects), get write tokens from the master and stream whole volumes.
- HTTP of master, volume server, filer and admin: HTTPS that requires a client certificate from that CA (the
  same material; weed's own HTTP clients present it via ``[https.client]``). The volume server also checks
  SeaweedFS's JWTs on writes and reads, the filer on writes and reads (``[jwt.*]``): a certificate alone does not
  let one write a volume. ``guard.white_list`` is left empty: it filters by IP, and every local user is 127.0.0.1.
- S3: plain HTTP with AWS SigV4, the one door DVC, botocore and s5cmd use. The identity file names the keys by
  environment variable (``${...}``, expanded by weed), so the keys reach weed only through its environment.

A fresh CA, certificate and signing keys are made at every start (the CA's private key is never written), so
nothing here needs to survive a restart. Every file is created 0600 (certificates included: they are ours alone).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "security.toml"  # weed reads it from -config_dir (we pass the state dir), before ~/.seaweedfs or /etc
IDENTITIES_FILE = "s3-identities.json"
TLS_DIR = "tls"
ACCESS_KEY_VAR, SECRET_KEY_VAR = "EEGCACHE_S3_ACCESS_KEY", "EEGCACHE_S3_SECRET_KEY"
# Components whose gRPC servers and clients present the certificate (security.toml's [grpc.<name>] sections).
GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "admin", "worker", "client")
HTTPS_COMPONENTS = ("master", "volume", "filer", "admin")
_JWT_SECTIONS = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
_JWT_SECONDS = 10  # SeaweedFS's default lifetime of a token


@dataclass(frozen=True)
class Security:
    """The TLS files of one start (CA certificate, the node's certificate and key), and what follows from them."""

    ca: Path
    cert: Path
    key: Path

    def weed_env(self, environ: Mapping[str, str], access_key: str, secret_key: str) -> dict[str, str]:
        """weed's environment: ``environ`` without what would change its security (WEED_* variables override
        security.toml; AWS_* keys would become another identity, whose key id weed logs; S3_BUCKET adds buckets),
        plus the keys under the names the identity file refers to."""
        kept = {k: v for k, v in environ.items() if not k.startswith(("WEED_", "AWS_")) and k != "S3_BUCKET"}
        return {**kept, ACCESS_KEY_VAR: access_key, SECRET_KEY_VAR: secret_key}

    def volumes_known(self, host: str, master_port: int) -> int:
        """How many volumes the master at ``host:master_port`` has heard of from volume servers (its topology),
        asked over mutual TLS with the client certificate; 0 while it does not answer."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        no_proxy = urllib.request.ProxyHandler({})  # an HTTPS_PROXY must not intercept requests to loopback
        opener = urllib.request.build_opener(no_proxy, urllib.request.HTTPSHandler(context=context))
        try:
            with opener.open(f"https://{host}:{master_port}/dir/status", timeout=2) as response:
                topology = json.load(response)["Topology"]
        except (OSError, ValueError, KeyError):
            return 0
        racks = [rack for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []]
        return sum(node.get("Volumes", 0) for rack in racks for node in rack.get("DataNodes") or [])


def write(state_dir: Path, host: str) -> Security:
    """Write security.toml, a new CA-signed certificate for ``host`` (an IP) and the S3 identity file into
    ``state_dir``; return where they are."""
    tls_dir = state_dir / TLS_DIR
    tls_dir.mkdir(mode=0o700, exist_ok=True)
    security = Security(tls_dir / "ca.crt", tls_dir / "node.crt", tls_dir / "node.key")
    ca_pem, cert_pem, key_pem = _certificates(host)
    for path, content in ((security.ca, ca_pem), (security.cert, cert_pem), (security.key, key_pem)):
        write_private(path, content)
    write_private(state_dir / CONFIG_FILE, _security_toml(security))
    identity = {
        "name": "eegcache",
        "credentials": [{"accessKey": f"${{{ACCESS_KEY_VAR}}}", "secretKey": f"${{{SECRET_KEY_VAR}}}"}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    write_private(state_dir / IDENTITIES_FILE, json.dumps({"identities": [identity]}, indent=2))
    return security


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically through a new file created 0600 (never widened, never chmod-ed):
    for files that hold a secret."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "w") as out:
        out.write(text)
    os.replace(tmp, path)


def _security_toml(security: Security) -> str:
    def section(name: str, **values: object) -> str:
        return f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())

    parts = [section(name, key=secrets.token_hex(32), expires_after_seconds=_JWT_SECONDS) for name in _JWT_SECTIONS]
    parts += [
        section("access", ui=False),  # the volume server's status page
        section("filer.expose_directory_metadata", enabled=False),
        section("grpc", ca=str(security.ca)),
        *(section(f"grpc.{name}", cert=str(security.cert), key=str(security.key)) for name in GRPC_COMPONENTS),
        *(
            section(f"https.{name}", cert=str(security.cert), key=str(security.key), ca=str(security.ca))
            for name in HTTPS_COMPONENTS
        ),
        section("https.client", enabled=True, cert=str(security.cert), key=str(security.key), ca=str(security.ca)),
    ]
    return "# written by eegcache at every start of the local S3 server; do not edit\n\n" + "\n".join(parts)


def _certificates(host: str) -> tuple[str, str, str]:
    """(CA certificate, node certificate, node private key) as PEM; the node certificate serves and authenticates
    clients, names ``host`` and localhost, and is valid for ten years (it is replaced at every start)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, node_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject: str, public_key, issuer: str, *extensions) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = certificate(
        "eegcache local S3 CA",
        ca_key.public_key(),
        "eegcache local S3 CA",
        (x509.BasicConstraints(ca=True, path_length=0), True),
    )
    names = [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    node = certificate(
        "eegcache local S3",
        node_key.public_key(),
        "eegcache local S3 CA",
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName(names), False),
        (x509.ExtendedKeyUsage(usage), False),
    )
    key_pem = node_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return tuple(c.public_bytes(serialization.Encoding.PEM).decode() for c in (ca, node)) + (key_pem.decode(),)
