"""Google Cloud calls builds need, over the agent's HTTP client: an access token and a GCS upload.

Tokens come, like ``google.auth.default()``, from ``GOOGLE_APPLICATION_CREDENTIALS`` (a service
account key, signed here with RS256, or an ``authorized_user`` refresh token) or from the
metadata server (GKE Workload Identity). ``STORAGE_EMULATOR_HOST`` points uploads at an
emulator without credentials, as the Google client libraries do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import httpx2 as httpx

from agent.build.source import BuildError

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
TOKEN_URI = "https://oauth2.googleapis.com/token"
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def _der(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """One DER element at *pos*: (tag, content, next position)."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    return tag, data[pos:pos + length], pos + length


def _rsa_key(pem: str) -> tuple[int, int]:
    """(n, d) of a PKCS#8 (or PKCS#1) RSA private key in PEM."""
    body = "".join(ln for ln in pem.strip().splitlines() if not ln.startswith("-----"))
    der = base64.b64decode(body)
    _, seq, _ = _der(der)
    _, _, pos = _der(seq)  # version
    tag, _, after = _der(seq, pos)
    if tag == 0x30:  # PKCS#8: AlgorithmIdentifier, then the PKCS#1 key in an OCTET STRING
        _, inner, _ = _der(seq, after)
        _, seq, _ = _der(inner)
        _, _, pos = _der(seq)
    ints = []
    while pos < len(seq) and len(ints) < 3:
        _, value, pos = _der(seq, pos)
        ints.append(int.from_bytes(value, "big"))
    n, _e, d = ints
    return n, d


def rs256(message: bytes, pem: str) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-256."""
    n, d = _rsa_key(pem)
    size = (n.bit_length() + 7) // 8
    digest_info = _SHA256_PREFIX + hashlib.sha256(message).digest()
    padded = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
    return pow(int.from_bytes(padded, "big"), d, n).to_bytes(size, "big")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_assertion(key: Mapping[str, str], now: float | None = None) -> str:
    now = int(now or time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": key.get("private_key_id", "")}
    claims = {"iss": key["client_email"], "scope": SCOPE, "aud": key.get("token_uri") or TOKEN_URI,
              "iat": now, "exp": now + 3600}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64url(rs256(signing_input.encode(), key['private_key']))}"


class TokenSource:
    """The agent's Google identity as a bearer token, refreshed before it expires."""

    def __init__(self, http: httpx.AsyncClient, env: Mapping[str, str] | None = None) -> None:
        self._http = http
        self._env = dict(os.environ if env is None else env)
        self._token = ""
        self._expires = 0.0

    @property
    def emulator(self) -> str:
        host = self._env.get("STORAGE_EMULATOR_HOST", "")
        return host if not host or "://" in host else f"http://{host}"

    async def token(self) -> str:
        if self._token and time.time() < self._expires - 300:
            return self._token
        path = self._env.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            key = json.loads(Path(path).read_text())
            if key.get("type") == "service_account":
                form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                        "assertion": service_account_assertion(key)}
                resp = await self._http.post(key.get("token_uri") or TOKEN_URI, data=form)
            elif key.get("type") == "authorized_user":
                form = {"grant_type": "refresh_token", "client_id": key["client_id"],
                        "client_secret": key["client_secret"], "refresh_token": key["refresh_token"]}
                resp = await self._http.post(TOKEN_URI, data=form)
            else:
                raise BuildError(f"GOOGLE_APPLICATION_CREDENTIALS: credentials of type {key.get('type')!r} are "
                                 "not supported (service_account or authorized_user)", stage="agent")
        else:
            host = self._env.get("GCE_METADATA_HOST") or "metadata.google.internal"
            url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
            try:
                resp = await self._http.get(url, headers={"Metadata-Flavor": "Google"})
            except httpx.HTTPError:
                raise BuildError("no Google credentials for the agent: give its ServiceAccount a Google service "
                                 "account (GKE Workload Identity annotation iam.gke.io/gcp-service-account)",
                                 stage="agent") from None
        if resp.status_code != 200:
            raise BuildError(f"getting a Google access token failed: {resp.status_code} {resp.text[:200]}",
                             stage="agent")
        body = resp.json()
        self._token, self._expires = body["access_token"], time.time() + float(body.get("expires_in", 3600))
        return self._token

    async def headers(self) -> dict[str, str]:
        return {} if self.emulator else {"Authorization": f"Bearer {await self.token()}"}


async def gcs_upload(http: httpx.AsyncClient, tokens: TokenSource, bucket: str, name: str, file: Path) -> None:
    base = tokens.emulator or "https://storage.googleapis.com"
    url = (f"{base}/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?uploadType=media&name="
           f"{urllib.parse.quote(name, safe='')}")
    headers = {"Content-Type": "application/gzip", **(await tokens.headers())}
    resp = await http.post(url, content=file.read_bytes(), headers=headers)
    if resp.status_code != 200:
        raise BuildError(f"uploading the build context to gs://{bucket}/{name} failed: {resp.status_code} "
                         f"{resp.text.strip()[:200]}", stage="agent")
