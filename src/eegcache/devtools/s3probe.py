"""Is a local S3 server serving its bucket with its keys? One signed ListObjectsV2, no client or session."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

REGION = "us-east-1"
# No proxy: an HTTP(S)_PROXY in the environment must not intercept requests to loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def probe(endpoint: str, bucket: str, access_key: str, secret_key: str) -> tuple[int, str]:
    """One authenticated ListObjectsV2 of the bucket: (HTTP status or 0, a short reason)."""
    query = {"list-type": "2", "max-keys": "1"}
    url, headers = sign_get(endpoint, f"/{bucket}", query, access_key, secret_key)
    try:
        with _OPENER.open(urllib.request.Request(url, headers=headers), timeout=2) as response:
            return response.status, "OK"
    except urllib.error.HTTPError as exc:
        code = re.search(rb"<Code>([^<]+)</Code>", exc.read() or b"")
        return exc.code, f"HTTP {exc.code} {code.group(1).decode() if code else exc.reason}"
    except (OSError, urllib.error.URLError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"


def sign_get(
    endpoint: str, path: str, query: dict[str, str], access_key: str, secret_key: str
) -> tuple[str, dict[str, str]]:
    """URL and headers of a GET signed with AWS Signature V4 (botocore's signer; no client or session needed)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{endpoint}{quote(path, safe='/-_.~')}?{urlencode(sorted(query.items()))}"
    request = AWSRequest(method="GET", url=url)
    S3SigV4Auth(Credentials(access_key, secret_key), "s3", REGION).add_auth(request)
    return url, dict(request.headers.items())
