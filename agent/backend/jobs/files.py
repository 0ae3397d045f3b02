"""An artifact version's files: their direct URLs (paged, like the SDK asks for them) and plain
GETs of those URLs with a size cap. Direct URLs are signed by W&B, so no API key is sent."""

from __future__ import annotations

import ssl
from typing import Any

import httpx2 as httpx

from agent import __version__
from agent.backend.jobs.document import JobError
from agent.backend.jobs.operations import Q_MEMBERSHIP_FILE_URLS
from agent.backend.transport import BackendError, GraphQLClient
from agent.jobspec import ArtifactRef

PER_PAGE = 5000  # what the SDK asks for


class DirectUrls:
    """GETs of direct URLs; a body over `limit` bytes is refused."""

    def __init__(self, *, timeout: float = 60.0, transport: httpx.AsyncBaseTransport | None = None,
                 verify: Any = True) -> None:
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), transport=transport, verify=verify,
                                       headers={"User-Agent": f"launch-agent/{__version__}"}, follow_redirects=True)
        self.requests = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, url: str, limit: int, what: str) -> bytes:
        self.requests += 1
        try:
            async with self._http.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise JobError(f"{what}: download answered HTTP {resp.status_code}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise JobError(f"{what} is larger than the limit of {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise JobError(f"{what}: download failed ({type(exc).__name__})") from None

    async def stream_to(self, url: str, path: Any, limit: int, what: str) -> int:
        """Write the body to `path`; the number of bytes written."""
        self.requests += 1
        size = 0
        try:
            async with self._http.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise JobError(f"{what}: download answered HTTP {resp.status_code}")
                with open(path, "wb") as out:
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise JobError(f"{what} is larger than the limit of {limit} bytes")
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise JobError(f"{what}: download failed ({type(exc).__name__})") from None
        return size


async def file_urls(client: GraphQLClient, ref: ArtifactRef) -> dict[str, str]:
    """name -> direct URL for every file of the version (``v<N>`` of its collection)."""
    urls: dict[str, str] = {}
    cursor: str | None = None
    while True:
        try:
            data = await client.execute("GetArtifactMembershipFileUrls", Q_MEMBERSHIP_FILE_URLS, {
                "entity": ref.entity, "project": ref.project, "collection": ref.collection,
                "alias": f"v{ref.version}", "cursor": cursor, "perPage": PER_PAGE})
        except BackendError as exc:
            raise JobError(f"cannot list the files of {ref.qualified_name}: {exc}") from None
        membership = (((data.get("project") or {}).get("artifactCollection") or {}).get("artifactMembership"))
        if not membership:
            raise JobError(f"artifact {ref.qualified_name} not found when listing its files")
        files = membership.get("files") or {}
        for edge in files.get("edges") or []:
            node = (edge or {}).get("node") or {}
            if node.get("name") and node.get("directUrl"):
                urls[str(node["name"])] = str(node["directUrl"])
        page = files.get("pageInfo") or {}
        if not page.get("hasNextPage") or not page.get("endCursor"):
            return urls
        cursor = str(page["endCursor"])
