"""Artifacts the way W&B stores them: types, collections (sequences), versions with aliases,
a manifest per version and the files behind it, kept as blobs served on direct URLs.

A version is created `PENDING` (by `createArtifact`), gets a manifest and file uploads, and
becomes `COMMITTED` with the next version index (`commitArtifact`); only then do `latest`,
`v<N>` and the requested aliases point at it. Creating a version whose digest matches a
committed version of the same collection returns that version (W&B's de-duplication), so a
client re-logging the same files uploads nothing. The admin API seeds committed versions
directly, in the same stored form (`seed`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from localenv.wandb_emulator.errors import StateError

MANIFEST_VERSION = 1
STORAGE_POLICY = "wandb-storage-policy-v1"


def b64_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def manifest_digest(contents: dict[str, dict[str, Any]]) -> str:
    """W&B's manifest digest: md5 over the sorted ``name:digest`` lines, as hex."""
    h = hashlib.md5()
    h.update(b"wandb-artifact-manifest-v1\n")
    for name in sorted(contents):
        h.update(f"{name}:{contents[name]['digest']}\n".encode())
    return h.hexdigest()


@dataclass
class Collection:
    id: str
    entity: str
    project: str
    type: str
    name: str
    description: str | None = None
    created_at: float = 0.0


@dataclass
class Version:
    id: str
    collection_id: str
    digest: str
    state: str = "PENDING"
    version_index: int | None = None
    aliases: list[str] = field(default_factory=list)
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    client_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    run: str | None = None
    manifest_id: str | None = None
    manifest_key: str | None = None  # blob key of the manifest JSON
    # file name -> {"key": blob key, "digest": b64 md5, "size": int}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    size: int = 0


class ArtifactStore:
    """All artifact data of one emulator; guarded by the state's lock, saved with it."""

    def __init__(self, next_id: Callable[[str], str], now: Callable[[], float], save: Callable[[], None]) -> None:
        self._next_id = next_id
        self._now = now
        self._save = save
        self.collections: dict[str, Collection] = {}
        self.versions: dict[str, Version] = {}
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, str] = {}  # manifest id -> version id
        self.pending_uploads: dict[str, tuple[str, str]] = {}  # upload key -> (version id, file name)

    # --- persistence ------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "collections": [asdict(c) for c in self.collections.values()],
            "versions": [asdict(v) for v in self.versions.values()],
            "blobs": {k: base64.b64encode(v).decode() for k, v in self.blobs.items()},
            "manifests": dict(self.manifests),
            "pending_uploads": {k: list(v) for k, v in self.pending_uploads.items()},
        }

    def load(self, doc: dict[str, Any]) -> None:
        self.collections = {c["id"]: Collection(**c) for c in doc.get("collections", [])}
        self.versions = {v["id"]: Version(**v) for v in doc.get("versions", [])}
        self.blobs = {k: base64.b64decode(v) for k, v in doc.get("blobs", {}).items()}
        self.manifests = dict(doc.get("manifests", {}))
        self.pending_uploads = {k: (v[0], v[1]) for k, v in doc.get("pending_uploads", {}).items()}

    # --- lookups ------------------------------------------------------------------------------

    def find_collection(self, entity: str, project: str, name: str, type_name: str | None = None) -> Collection | None:
        for c in self.collections.values():
            if (c.entity, c.project, c.name) == (entity, project, name) and type_name in (None, c.type):
                return c
        return None

    def project_types(self, entity: str, project: str) -> list[str]:
        return sorted({c.type for c in self.collections.values() if (c.entity, c.project) == (entity, project)})

    def collection_versions(self, collection_id: str) -> list[Version]:
        found = [v for v in self.versions.values() if v.collection_id == collection_id and v.state == "COMMITTED"]
        return sorted(found, key=lambda v: v.version_index or 0)

    def by_alias(self, collection: Collection, alias: str) -> Version | None:
        for v in self.collection_versions(collection.id):
            if alias in v.aliases or alias == f"v{v.version_index}":
                return v
        return None

    def resolve(self, entity: str, project: str, name: str) -> tuple[Collection, Version] | None:
        """``collection:alias`` (alias ``latest`` when absent) -> the collection and its version."""
        base, _, alias = name.partition(":")
        collection = self.find_collection(entity, project, base)
        if collection is None:
            return None
        version = self.by_alias(collection, alias or "latest")
        return (collection, version) if version is not None else None

    def latest(self, collection_id: str) -> Version | None:
        versions = self.collection_versions(collection_id)
        return versions[-1] if versions else None

    # --- writes ---------------------------------------------------------------------------------

    def create_version(self, *, entity: str, project: str, type_name: str, collection_name: str, digest: str,
                       description: str | None, metadata: dict[str, Any] | None, aliases: list[str],
                       client_id: str | None, run: str | None) -> tuple[Version, Version | None]:
        """A pending version (or the committed one with the same digest); and the collection's
        latest committed version before this call."""
        if not collection_name or not type_name:
            raise StateError("createArtifact needs an artifact type and a collection name")
        collection = self.find_collection(entity, project, collection_name)
        if collection is not None and collection.type != type_name:
            raise StateError(f"artifact collection {collection_name} has type {collection.type}, not {type_name}")
        if collection is None:
            collection = Collection(id=self._next_id("ArtifactCollection"), entity=entity, project=project,
                                    type=type_name, name=collection_name, created_at=self._now())
            self.collections[collection.id] = collection
        before = self.latest(collection.id)
        for v in self.versions.values():
            if v.collection_id != collection.id:
                continue
            same_client = client_id is not None and v.client_id == client_id
            if same_client or (v.digest == digest and v.state == "COMMITTED"):
                if v.state == "COMMITTED":
                    self._assign_aliases(v, aliases)
                else:
                    v.aliases = sorted(set(v.aliases) | set(aliases))
                self._save()
                return v, before
        now = self._now()
        version = Version(id=self._next_id("Artifact"), collection_id=collection.id, digest=digest,
                          description=description, metadata=dict(metadata or {}), aliases=sorted(set(aliases)),
                          client_id=client_id, created_at=now, updated_at=now, run=run)
        self.versions[version.id] = version
        self._save()
        return version, before

    def _assign_aliases(self, version: Version, aliases: list[str]) -> None:
        for other in self.versions.values():
            if other.collection_id == version.collection_id and other is not version:
                other.aliases = [a for a in other.aliases if a not in aliases]
        version.aliases = sorted(set(version.aliases) | set(aliases))

    def get(self, version_id: str) -> Version:
        version = self.versions.get(version_id)
        if version is None:
            raise StateError(f"artifact {version_id} not found")
        return version

    def create_manifest(self, version_id: str) -> tuple[str, str]:
        """The manifest id and the upload key for its JSON."""
        version = self.get(version_id)
        manifest_id = version.manifest_id or self._next_id("ArtifactManifest")
        version.manifest_id = manifest_id
        self.manifests[manifest_id] = version.id
        key = f"manifests/{version.id}"
        self.pending_uploads[key] = (version.id, "")
        self._save()
        return manifest_id, key

    def create_file(self, version_id: str, name: str, md5: str) -> str:
        """The upload key of one file of a pending version (content-addressed, like W&B's V2 layout)."""
        version = self.get(version_id)
        collection = self.collections[version.collection_id]
        key = f"{collection.entity}/{collection.project}/{self._hex(md5)}"
        if key not in self.blobs:
            self.pending_uploads[key] = (version.id, name)
        self._save()
        return key

    @staticmethod
    def _hex(b64: str) -> str:
        try:
            return base64.b64decode(b64).hex()
        except (ValueError, TypeError):
            return hashlib.md5(b64.encode()).hexdigest()

    def upload(self, key: str, data: bytes) -> bool:
        if key not in self.pending_uploads and key not in self.blobs:
            return False
        self.blobs[key] = data
        self.pending_uploads.pop(key, None)
        self._save()
        return True

    def commit(self, version_id: str) -> Version:
        version = self.get(version_id)
        if version.state == "COMMITTED":
            return version
        manifest_key = f"manifests/{version.id}"
        raw = self.blobs.get(manifest_key)
        if raw is None:
            raise StateError(f"artifact {version_id} has no uploaded manifest")
        self._index_manifest(version, raw, manifest_key)
        missing = [n for n, f in version.files.items() if f["key"] not in self.blobs]
        if missing:
            raise StateError(f"artifact {version_id}: files not uploaded: {', '.join(sorted(missing)[:5])}")
        self._commit(version)
        self._save()
        return version

    def _index_manifest(self, version: Version, raw: bytes, manifest_key: str) -> None:
        try:
            manifest = json.loads(raw)
            contents = manifest["contents"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"artifact {version.id}: the manifest is not valid: {exc}") from exc
        collection = self.collections[version.collection_id]
        files: dict[str, dict[str, Any]] = {}
        for name, entry in contents.items():
            digest = str(entry.get("digest", ""))
            if entry.get("ref"):
                raise StateError(f"artifact {version.id}: reference entries ({name}) are not supported")
            files[name] = {"key": f"{collection.entity}/{collection.project}/{self._hex(digest)}",
                           "digest": digest, "size": int(entry.get("size") or 0)}
        version.files = files
        version.size = sum(f["size"] for f in files.values())
        version.manifest_key = manifest_key

    def _commit(self, version: Version) -> None:
        existing = self.collection_versions(version.collection_id)
        version.version_index = (max((v.version_index or 0) for v in existing) + 1) if existing else 0
        version.state = "COMMITTED"
        version.updated_at = self._now()
        self._assign_aliases(version, [*version.aliases, "latest"])

    def seed(self, *, entity: str, project: str, type_name: str, name: str, files: dict[str, bytes],
             aliases: list[str], metadata: dict[str, Any] | None = None,
             description: str | None = None) -> Version:
        """A committed version with these files, stored exactly as an upload through the SDK is."""
        contents = {n: {"digest": b64_md5(d), "size": len(d)} for n, d in sorted(files.items())}
        manifest = {"version": MANIFEST_VERSION, "storagePolicy": STORAGE_POLICY,
                    "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents}
        version, _ = self.create_version(entity=entity, project=project, type_name=type_name, collection_name=name,
                                         digest=manifest_digest(contents), description=description,
                                         metadata=metadata, aliases=aliases, client_id=None, run=None)
        if version.state == "COMMITTED":
            return version
        _, manifest_key = self.create_manifest(version.id)
        self.upload(manifest_key, json.dumps(manifest).encode())
        for fname, data in files.items():
            self.upload(self.create_file(version.id, fname, b64_md5(data)), data)
        return self.commit(version.id)

    def file_bytes(self, version: Version, name: str) -> bytes | None:
        entry = version.files.get(name)
        return None if entry is None else self.blobs.get(entry["key"])


def version_json(store: ArtifactStore, version: Version) -> dict[str, Any]:
    collection = store.collections[version.collection_id]
    doc = asdict(version)
    doc.update(entity=collection.entity, project=collection.project, type=collection.type,
               collection=collection.name, name=f"{collection.name}:v{version.version_index}")
    return doc


def admin(store: ArtifactStore, method: str, rest: list[str], body: dict[str, Any]) -> Any:
    """``GET /_emulator/artifacts`` lists versions; ``POST`` seeds one:
    ``{entity, project, type, name, files: {path: text | {"base64": ...}}, aliases?, metadata?}``."""
    if method == "GET" and not rest:
        return [version_json(store, v) for v in store.versions.values()]
    if method == "POST" and not rest:
        files = body.get("files")
        if not isinstance(files, dict) or not files:
            raise StateError("field 'files' must map file names to their text (or {\"base64\": ...})")
        raw: dict[str, bytes] = {}
        for fname, value in files.items():
            if isinstance(value, dict) and isinstance(value.get("base64"), str):
                raw[str(fname)] = base64.b64decode(value["base64"])
            elif isinstance(value, str):
                raw[str(fname)] = value.encode()
            else:
                raise StateError(f"file {fname!r}: give its text or {{\"base64\": ...}}")
        for key in ("entity", "project", "type", "name"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise StateError(f"field {key!r} is required")
        version = store.seed(entity=body["entity"], project=body["project"], type_name=body["type"],
                             name=body["name"], files=raw, aliases=list(body.get("aliases") or []),
                             metadata=body.get("metadata"), description=body.get("description"))
        return version_json(store, version)
    raise StateError(f"no artifacts route {method} {'/'.join(rest)}")
