"""Does an image exist? The OCI distribution API (``HEAD /v2/<repo>/manifests/<tag>``), for every
registry: ECR, Artifact Registry and ACR with their own credentials, any other registry with
the docker config the builds push with, or anonymously. Token challenges (``WWW-Authenticate:
Bearer realm=...``) are answered as the distribution spec describes.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx2 as httpx

from agent.build.uris import ImageRef

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')

# (user, password) for a registry host, or None for anonymous access.
Login = Callable[[str], Awaitable[tuple[str, str] | None]]


class RegistryError(Exception):
    """The registry could not say whether the image exists."""


@dataclass(frozen=True)
class Transport:
    plain_http: bool = False  # Kaniko's --insecure / --insecure-registry
    verify_tls: bool = True  # Kaniko's --skip-tls-verify


def docker_config_login(config: Mapping[str, object]) -> Login:
    """Credentials from a docker ``config.json`` (``auths.<host>.auth`` or username/password)."""
    auths = config.get("auths") if isinstance(config.get("auths"), Mapping) else {}
    assert isinstance(auths, Mapping)

    async def login(host: str) -> tuple[str, str] | None:
        for key, entry in auths.items():
            name = str(key).removeprefix("https://").removeprefix("http://").split("/", 1)[0]
            if name != host or not isinstance(entry, Mapping):
                continue
            if entry.get("auth"):
                user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
                return user, password
            if entry.get("username"):
                return str(entry["username"]), str(entry.get("password", ""))
        return None

    return login


def parse_docker_config(raw: bytes | str) -> dict[str, object]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _token(http: httpx.AsyncClient, challenge: str, scope: str, creds: tuple[str, str] | None) -> str:
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    realm = params.pop("realm", "")
    if not realm:
        raise RegistryError(f"the registry's challenge has no realm: {challenge[:120]}")
    query = {k: v for k, v in params.items() if k in ("service",)}
    query["scope"] = scope
    headers = {"Authorization": _basic(*creds)} if creds else {}
    resp = await http.get(realm, params=query, headers=headers)
    if resp.status_code != 200:
        raise RegistryError(f"the registry's token service {realm} answered {resp.status_code}")
    body = resp.json()
    token = body.get("token") or body.get("access_token")
    if not token:
        raise RegistryError(f"the registry's token service {realm} returned no token")
    return str(token)


async def image_exists(http: httpx.AsyncClient, ref: ImageRef, login: Login | None = None,
                       transport: Transport = Transport()) -> bool:
    """True when the registry has a manifest for the tag; RegistryError when it cannot tell."""
    scheme = "http" if transport.plain_http else "https"
    url = f"{scheme}://{ref.host}/v2/{ref.repository}/manifests/{ref.tag}"
    headers = {"Accept": MANIFEST_TYPES}
    try:
        resp = await http.head(url, headers=headers)
        if resp.status_code == 401:
            challenge = resp.headers.get("www-authenticate", "")
            creds = await login(ref.host) if login else None
            if challenge.lower().startswith("bearer"):
                token = await _token(http, challenge, f"repository:{ref.repository}:pull", creds)
                headers["Authorization"] = f"Bearer {token}"
            elif creds:
                headers["Authorization"] = _basic(*creds)
            else:
                raise RegistryError(f"{ref.host} asks for credentials and the agent has none for it")
            resp = await http.head(url, headers=headers)
    except httpx.HTTPError as exc:
        raise RegistryError(f"{ref.host}: {type(exc).__name__}: {exc}") from None
    if resp.status_code == 200:
        return True
    if resp.status_code == 404:
        return False
    raise RegistryError(f"{ref.host} answered {resp.status_code} for {ref}")
