"""Scanning what a test run captured for a secret (the W&B API key): process output, files, the
emulator's request log and every object left in the cluster.

The key may legitimately live in one place only: the data of its own Secret (`holders`). Anywhere
else — a log line, a traceback, an event, an annotation, a ConfigMap, a launched container's
literal env, a request the emulator answered — it is a leak. Besides the key itself the scan looks
for its base64 forms and for its first and last 16 characters, so a truncated or encoded copy is
found too. A finding never prints the key: only where it was and a masked excerpt.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

_FRAGMENT = 16


class KubeLike(Protocol):
    def kubectl(self, *args: str, check: bool = True, **kw: Any) -> Any: ...


@dataclass(frozen=True)
class Leak:
    source: str  # what was captured: "agent-1.log", "cluster", "emulator requests"
    where: str  # line number, object kind/namespace/name and field path
    excerpt: str  # the context with the secret masked


def needles(secret: str) -> list[str]:
    """The forms of *secret* to look for: itself, base64 (standard and URL-safe), leading and
    trailing fragments."""
    raw = secret.encode()
    forms = [secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    if len(secret) >= 2 * _FRAGMENT:
        forms += [secret[:_FRAGMENT], secret[-_FRAGMENT:]]
    out: list[str] = []
    for f in forms:
        f = f.rstrip("=")
        if len(f) >= 8 and f not in out:
            out.append(f)
    return out


def _mask(text: str, forms: list[str]) -> str:
    for f in forms:
        text = text.replace(f, "<KEY>")
    return text


@dataclass
class SecretScan:
    """Collects leaks of one secret across everything a test hands it."""

    secret: str
    leaks: list[Leak] = field(default_factory=list)
    scanned: dict[str, int] = field(default_factory=dict)  # source -> lines or objects looked at

    def __post_init__(self) -> None:
        if len(self.secret) < 8:
            raise ValueError("a secret of fewer than 8 characters cannot be told apart from ordinary text")
        self._forms = needles(self.secret)

    def _found(self, text: str) -> str | None:
        return next((f for f in self._forms if f in text), None)

    def text(self, source: str, text: str) -> None:
        lines = text.splitlines()
        self.scanned[source] = self.scanned.get(source, 0) + len(lines)
        for n, line in enumerate(lines, 1):
            if self._found(line):
                self.leaks.append(Leak(source, f"line {n}", _mask(line, self._forms)[:200]))

    def file(self, path: str | Path, source: str | None = None) -> None:
        p = Path(path)
        if p.exists():
            self.text(source or p.name, p.read_text(errors="replace"))

    def objects(self, source: str, objs: Iterable[Mapping[str, Any]], holders: Iterable[str] = ()) -> None:
        """Every string in every object, except the data of the Secrets named in *holders*."""
        keep = set(holders)
        count = 0
        for obj in objs:
            count += 1
            meta = obj.get("metadata") or {}
            ident = f"{obj.get('kind', '?')} {meta.get('namespace', '')}/{meta.get('name', '')}"
            if obj.get("kind") == "Secret" and meta.get("name") in keep:
                obj = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
                meta = dict(meta)
                ann = dict(meta.get("annotations") or {})
                ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)  # a copy of stringData
                meta["annotations"] = ann
                obj["metadata"] = meta
            for path, value in _strings(obj, ""):
                if self._found(value):
                    self.leaks.append(Leak(source, f"{ident} {path}", _mask(value, self._forms)[:200]))
        self.scanned[source] = self.scanned.get(source, 0) + count

    def cluster(self, kube: KubeLike, namespaces: Iterable[str], holders: Iterable[str] = ()) -> None:
        """Every listable namespaced object (events included) in *namespaces*, as the admin sees it."""
        kinds = kube.kubectl("api-resources", "--namespaced=true", "--verbs=list", "-o", "name").stdout.split()
        objs: list[dict[str, Any]] = []
        for ns in namespaces:
            proc = kube.kubectl("get", ",".join(kinds), "-n", ns, "-o", "json", "--ignore-not-found", check=False)
            if proc.returncode == 0 and proc.stdout.strip():
                objs += json.loads(proc.stdout).get("items", [])
        self.objects("cluster", objs, holders)

    def report(self) -> str:
        lines = [f"{leak.source}: {leak.where}: {leak.excerpt}" for leak in self.leaks[:20]]
        more = f"\n... and {len(self.leaks) - 20} more" if len(self.leaks) > 20 else ""
        return "\n".join(lines) + more

    def assert_clean(self) -> None:
        if self.leaks:
            raise AssertionError(f"the API key leaked in {len(self.leaks)} place(s):\n{self.report()}")


def _strings(node: Any, path: str) -> Iterable[tuple[str, str]]:
    if isinstance(node, str):
        yield path or ".", node
    elif isinstance(node, Mapping):
        for k, v in node.items():
            yield from _strings(str(k), f"{path}.{k}<key>")
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")
