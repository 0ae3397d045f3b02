"""Azure blob calls builds need, over the agent's HTTP client: Put Blob with the agent's identity
(or a storage key), and a short-lived read-only user-delegation SAS URL for one blob.

The identity is found like ``DefaultAzureCredential``'s first steps: a client secret
(``AZURE_CLIENT_ID`` + ``AZURE_TENANT_ID`` + ``AZURE_CLIENT_SECRET``), Azure Workload Identity
(``AZURE_FEDERATED_TOKEN_FILE``), else the managed identity endpoint. ``AZURE_STORAGE_ACCESS_KEY``
in the agent's environment signs requests with the account key instead.
``LAUNCH_AGENT_AZURE_BLOB_ENDPOINT`` (``http://host:port/<account>``) points the calls at an
emulator.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from agent.build.source import BuildError

API_VERSION = "2021-08-06"
SAS_VERSION = "2020-12-06"
SCOPE = "https://storage.azure.com/.default"
AUTHORITY = "https://login.microsoftonline.com/"


def _http_date(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%a, %d %b %Y %H:%M:%S GMT")


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BlobEndpoint:
    account: str
    base: str  # https://<account>.blob.core.windows.net, or an emulator's http://host:port/<account>

    def url(self, container: str, blob: str = "", query: str = "") -> str:
        path = "/".join(urllib.parse.quote(p, safe="/") for p in (container, blob) if p)
        return f"{self.base}/{path}" + (f"?{query}" if query else "")


def blob_endpoint(account: str, env: Mapping[str, str]) -> BlobEndpoint:
    custom = env.get("LAUNCH_AGENT_AZURE_BLOB_ENDPOINT", "").rstrip("/")
    if custom:
        return BlobEndpoint(custom.rsplit("/", 1)[-1], custom)
    return BlobEndpoint(account, f"https://{account}.blob.core.windows.net")


def shared_key_authorization(method: str, url: str, headers: Mapping[str, str], account: str, key: str) -> str:
    """``SharedKey`` Authorization header value for the blob service."""
    lower = {k.lower(): str(v) for k, v in headers.items()}
    length = lower.get("content-length", "")
    standard = [lower.get(h, "") for h in ("content-encoding", "content-language")] + \
        ["" if length == "0" else length] + \
        [lower.get(h, "") for h in ("content-md5", "content-type", "date", "if-modified-since", "if-match",
                                    "if-none-match", "if-unmodified-since", "range")]
    ms = "".join(f"{k}:{lower[k].strip()}\n" for k in sorted(lower) if k.startswith("x-ms-"))
    parts = urllib.parse.urlsplit(url)
    resource = f"/{account}{parts.path or '/'}"
    params: dict[str, list[str]] = {}
    for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        params.setdefault(k.lower(), []).append(v)
    resource += "".join(f"\n{k}:{','.join(sorted(v))}" for k, v in sorted(params.items()))
    to_sign = "\n".join([method.upper(), *standard]) + "\n" + ms + resource
    signature = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest())
    return f"SharedKey {account}:{signature.decode()}"


class AzureIdentity:
    """The agent's Azure identity: a bearer token for storage, refreshed before it expires."""

    def __init__(self, http: httpx.AsyncClient, env: Mapping[str, str] | None = None) -> None:
        self._http = http
        self._env = dict(os.environ if env is None else env)
        self._token = ""
        self._expires = 0.0

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    @property
    def account_key(self) -> str:
        return self._env.get("AZURE_STORAGE_ACCESS_KEY", "")

    async def token(self) -> str:
        if self._token and time.time() < self._expires - 300:
            return self._token
        env = self._env
        authority = (env.get("AZURE_AUTHORITY_HOST") or AUTHORITY).rstrip("/") + "/"
        form = {"client_id": env.get("AZURE_CLIENT_ID", ""), "scope": SCOPE, "grant_type": "client_credentials"}
        if env.get("AZURE_CLIENT_SECRET") and env.get("AZURE_TENANT_ID"):
            form["client_secret"] = env["AZURE_CLIENT_SECRET"]
            resp = await self._http.post(f"{authority}{env['AZURE_TENANT_ID']}/oauth2/v2.0/token", data=form)
        elif env.get("AZURE_FEDERATED_TOKEN_FILE") and env.get("AZURE_TENANT_ID"):
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = Path(env["AZURE_FEDERATED_TOKEN_FILE"]).read_text().strip()
            resp = await self._http.post(f"{authority}{env['AZURE_TENANT_ID']}/oauth2/v2.0/token", data=form)
        else:
            params = {"api-version": "2018-02-01", "resource": "https://storage.azure.com/"}
            if env.get("AZURE_CLIENT_ID"):
                params["client_id"] = env["AZURE_CLIENT_ID"]
            try:
                resp = await self._http.get("http://169.254.169.254/metadata/identity/oauth2/token", params=params,
                                            headers={"Metadata": "true"})
            except httpx.HTTPError:
                raise BuildError("no Azure identity for the agent: give its ServiceAccount a workload identity "
                                 "(annotation azure.workload.identity/client-id and pod label "
                                 "azure.workload.identity/use)", stage="agent") from None
        if resp.status_code != 200:
            raise BuildError(f"getting an Azure token failed: {resp.status_code} {resp.text[:200]}", stage="agent")
        body = resp.json()
        self._token = body["access_token"]
        self._expires = time.time() + float(body.get("expires_in", 3600))
        return self._token

    async def sign(self, method: str, url: str, headers: dict[str, str], account: str) -> dict[str, str]:
        headers = {**headers, "x-ms-version": API_VERSION, "x-ms-date": _http_date()}
        if self.account_key:
            headers["Authorization"] = shared_key_authorization(method, url, headers, account, self.account_key)
        else:
            headers["Authorization"] = f"Bearer {await self.token()}"
        return headers


async def put_blob(http: httpx.AsyncClient, identity: AzureIdentity, account: str, container: str, blob: str,
                   file: Path) -> None:
    where = blob_endpoint(account, identity.env)
    url = where.url(container, blob)
    data = file.read_bytes()
    headers = await identity.sign("PUT", url, {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/gzip",
                                               "Content-Length": str(len(data))}, where.account)
    resp = await http.put(url, content=data, headers=headers)
    if resp.status_code != 201:
        raise BuildError(f"uploading the build context to {container}/{blob} of storage account {account} failed: "
                         f"{resp.status_code} {_error(resp.text)}", stage="agent")


def _error(body: str) -> str:
    try:
        found = {el.tag: (el.text or "") for el in ET.fromstring(body).iter()}
    except ET.ParseError:
        return body.strip()[:200]
    return f"{found.get('Code', '')}: {found.get('Message', '').splitlines()[0] if found.get('Message') else ''}"


async def read_sas_url(http: httpx.AsyncClient, identity: AzureIdentity, account: str, container: str,
                       blob: str, lifetime: float = 3600.0) -> str:
    """A read-only user-delegation SAS URL for one blob, valid for *lifetime* seconds."""
    where = blob_endpoint(account, identity.env)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start, expiry = now - dt.timedelta(minutes=5), now + dt.timedelta(seconds=lifetime)
    body = f"<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>{_iso(start)}</Start>" \
           f"<Expiry>{_iso(expiry)}</Expiry></KeyInfo>".encode()
    url = f"{where.base}/?restype=service&comp=userdelegationkey"
    headers = {"x-ms-version": API_VERSION, "x-ms-date": _http_date(), "Content-Type": "application/xml",
               "Authorization": f"Bearer {await identity.token()}"}
    resp = await http.post(url, content=body, headers=headers)
    if resp.status_code != 200:
        raise BuildError(f"getting a user delegation key of storage account {account} failed: "
                         f"{resp.status_code} {_error(resp.text)}", stage="agent")
    key = {el.tag: (el.text or "") for el in ET.fromstring(resp.text).iter()}
    return sas_url(where, container, blob, key, start, expiry)


def sas_url(where: BlobEndpoint, container: str, blob: str, key: Mapping[str, str], start: dt.datetime,
            expiry: dt.datetime) -> str:
    """The blob URL with a read-only user-delegation SAS signed with the delegation *key*."""
    fields = {"sp": "r", "st": _iso(start), "se": _iso(expiry), "skoid": key["SignedOid"],
              "sktid": key["SignedTid"], "skt": key["SignedStart"], "ske": key["SignedExpiry"],
              "sks": key["SignedService"], "skv": key["SignedVersion"], "spr": "https,http", "sv": SAS_VERSION,
              "sr": "b"}
    resource = f"/blob/{where.account}/{container}/{blob}"
    to_sign = "\n".join([fields["sp"], fields["st"], fields["se"], resource, fields["skoid"], fields["sktid"],
                         fields["skt"], fields["ske"], fields["sks"], fields["skv"], "", "", "", "",
                         fields["spr"], fields["sv"], fields["sr"], "", "", "", "", "", "", ""])
    sig = base64.b64encode(hmac.new(base64.b64decode(key["Value"]), to_sign.encode(), hashlib.sha256).digest())
    query = urllib.parse.urlencode({**fields, "sig": sig.decode()})
    return where.url(container, blob, query)
