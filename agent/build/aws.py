"""The few AWS calls builds need, over the agent's own HTTP client: Signature V4, credentials, an S3
PUT, ECR's authorization token.

Credentials are found the way the AWS SDKs look for them, in this order: environment keys
(``AWS_ACCESS_KEY_ID``...), a web identity (IRSA: ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``,
exchanged with STS ``AssumeRoleWithWebIdentity``), container credentials (EKS Pod Identity:
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and its token), the shared credentials file. Endpoints
follow ``AWS_ENDPOINT_URL_<SERVICE>`` / ``AWS_ENDPOINT_URL`` like the SDKs (S3 then uses
path-style addressing).
"""

from __future__ import annotations

import base64
import configparser
import datetime as dt
import hashlib
import hmac
import json
import os
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from agent.build.source import BuildError


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str = ""
    expires: float = float("inf")  # epoch seconds

    def fresh(self) -> bool:
        return time.time() < self.expires - 300


def _quote(text: str, safe: str = "/~") -> str:
    return urllib.parse.quote(text, safe=safe)


def sign(method: str, url: str, headers: Mapping[str, str], payload_sha256: str, creds: Credentials,
         region: str, service: str, now: dt.datetime | None = None) -> dict[str, str]:
    """Headers to add to a request for Signature V4 (``Authorization``, ``x-amz-date``, ...)."""
    now = now or dt.datetime.now(dt.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    parts = urllib.parse.urlsplit(url)
    out = {"x-amz-date": amz_date, "x-amz-content-sha256": payload_sha256}
    if creds.token:
        out["x-amz-security-token"] = creds.token
    all_headers = {k.lower(): str(v).strip() for k, v in {**headers, **out}.items()}
    all_headers["host"] = parts.netloc
    names = sorted(all_headers)
    query = sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    canonical = "\n".join([
        method.upper(),
        (parts.path or "/") if service == "s3" else _quote(parts.path or "/"),  # the URL is encoded once
        "&".join(f"{_quote(k, '-_.~')}={_quote(v, '-_.~')}" for k, v in query),
        "".join(f"{n}:{all_headers[n]}\n" for n in names),
        ";".join(names),
        payload_sha256,
    ])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + creds.secret_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                            f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return out


def endpoint(service: str, region: str, env: Mapping[str, str], default: str) -> tuple[str, bool]:
    """(base URL, custom) for a service: ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_ENDPOINT_URL``, else AWS's."""
    custom = env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env.get("AWS_ENDPOINT_URL")
    return (custom.rstrip("/"), True) if custom else (default, False)


class CredentialChain:
    """The agent's AWS identity, resolved lazily and refreshed before it expires."""

    def __init__(self, http: httpx.AsyncClient, env: Mapping[str, str] | None = None,
                 home: Path | None = None) -> None:
        self._http = http
        self._env = dict(os.environ if env is None else env)
        self._home = home or Path.home()
        self._cached: Credentials | None = None

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    async def get(self, region: str) -> Credentials:
        if self._cached and self._cached.fresh():
            return self._cached
        env = self._env
        creds: Credentials | None = None
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            creds = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN", ""))
        elif env.get("AWS_ROLE_ARN") and env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
            creds = await self._web_identity(region)
        elif env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
            creds = await self._container()
        else:
            creds = self._shared_file()
        if creds is None:
            raise BuildError("no AWS credentials for the agent: give its ServiceAccount an IAM role (IRSA "
                             "annotation eks.amazonaws.com/role-arn or an EKS Pod Identity association)",
                             stage="agent")
        self._cached = creds
        return creds

    async def _web_identity(self, region: str) -> Credentials:
        env = self._env
        token = Path(env["AWS_WEB_IDENTITY_TOKEN_FILE"]).read_text().strip()
        base, _ = endpoint("sts", region, env, f"https://sts.{region}.amazonaws.com" if region
                           else "https://sts.amazonaws.com")
        form = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": env["AWS_ROLE_ARN"],
                "RoleSessionName": env.get("AWS_ROLE_SESSION_NAME") or "launch-agent", "WebIdentityToken": token}
        resp = await self._http.post(base + "/", data=form)
        if resp.status_code != 200:
            raise BuildError(f"STS AssumeRoleWithWebIdentity for {env['AWS_ROLE_ARN']} answered "
                             f"{resp.status_code}: {_aws_error(resp.text)}", stage="agent")
        root = ET.fromstring(resp.text)
        found = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        return Credentials(found["AccessKeyId"], found["SecretAccessKey"], found.get("SessionToken", ""),
                           _parse_time(found.get("Expiration", "")))

    async def _container(self) -> Credentials:
        env = self._env
        url = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or \
            "http://169.254.170.2" + env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
        token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")
        if env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
            token = Path(env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).read_text().strip()
        resp = await self._http.get(url, headers={"Authorization": token} if token else {})
        if resp.status_code != 200:
            raise BuildError(f"the container credentials endpoint answered {resp.status_code}", stage="agent")
        body = resp.json()
        return Credentials(body["AccessKeyId"], body["SecretAccessKey"], body.get("Token", ""),
                           _parse_time(body.get("Expiration", "")))

    def _shared_file(self) -> Credentials | None:
        path = Path(self._env.get("AWS_SHARED_CREDENTIALS_FILE") or self._home / ".aws" / "credentials")
        if not path.is_file():
            return None
        parser = configparser.ConfigParser()
        parser.read(path)
        profile = self._env.get("AWS_PROFILE") or "default"
        if not parser.has_section(profile) or not parser.has_option(profile, "aws_access_key_id"):
            return None
        section = parser[profile]
        return Credentials(section["aws_access_key_id"], section.get("aws_secret_access_key", ""),
                           section.get("aws_session_token", ""))


def _parse_time(text: str) -> float:
    if not text:
        return float("inf")
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _aws_error(body: str) -> str:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return body.strip()[:200]
    found = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
    return f"{found.get('Code', '')}: {found.get('Message', '')}".strip(": ")[:200]


def s3_object_url(bucket: str, key: str, region: str, env: Mapping[str, str]) -> str:
    base, custom = endpoint("s3", region, env, f"https://{bucket}.s3.{region}.amazonaws.com")
    path = _quote(key)
    return f"{base}/{bucket}/{path}" if custom else f"{base}/{path}"


async def s3_put(http: httpx.AsyncClient, chain: CredentialChain, bucket: str, key: str, file: Path,
                 sha256: str, region: str) -> None:
    creds = await chain.get(region)
    url = s3_object_url(bucket, key, region, chain.env)
    headers = {"Content-Type": "application/gzip", "Content-Length": str(file.stat().st_size)}
    headers.update(sign("PUT", url, headers, sha256, creds, region or "us-east-1", "s3"))
    with file.open("rb") as handle:
        resp = await http.put(url, content=handle.read(), headers=headers)
    if resp.status_code not in (200, 201):
        raise BuildError(f"uploading the build context to s3://{bucket}/{key} failed: {resp.status_code} "
                         f"{_aws_error(resp.text)}", stage="agent")


async def ecr_login(http: httpx.AsyncClient, chain: CredentialChain, region: str) -> tuple[str, str]:
    """(user, password) for an ECR registry from ``GetAuthorizationToken``."""
    creds = await chain.get(region)
    url, _ = endpoint("ecr", region, chain.env, f"https://api.ecr.{region}.amazonaws.com")
    url += "/"
    body = b"{}"
    headers = {"Content-Type": "application/x-amz-json-1.1",
               "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"}
    headers.update(sign("POST", url, headers, hashlib.sha256(body).hexdigest(), creds, region, "ecr"))
    resp = await http.post(url, content=body, headers=headers)
    if resp.status_code != 200:
        raise BuildError(f"ECR GetAuthorizationToken answered {resp.status_code}: {resp.text.strip()[:200]}",
                         stage="agent")
    data = json.loads(resp.text)["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(data).decode().partition(":")
    return user, password
