"""Resolvers of artifacts.graphql: logging an artifact (createArtifact, its manifest and files,
commit) and fetching one (membership by name, by id, manifest and file URLs).

Files are served on direct URLs under ``/_emulator/artifacts/blobs/`` and uploaded to
``/_emulator/artifacts/uploads/``, both on the emulator itself (loopback).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from graphql import GraphQLResolveInfo

from localenv.wandb_emulator.artifact_store import Collection, Version
from localenv.wandb_emulator.errors import StateError
from localenv.wandb_emulator.state import EmulatorState, Project, Run, iso

if TYPE_CHECKING:
    from localenv.wandb_emulator.resolvers import RequestContext

BLOB_ROUTE = "/_emulator/artifacts/blobs/"
UPLOAD_ROUTE = "/_emulator/artifacts/uploads/"
MANIFEST_FILE = "wandb_manifest.json"


def _ctx(info: GraphQLResolveInfo) -> RequestContext:
    ctx: RequestContext = info.context
    return ctx


def _blob_url(ctx: RequestContext, key: str) -> str:
    return ctx.base_url + BLOB_ROUTE + quote(key)


def _page(nodes: list[dict[str, Any]], after: str | None, first: int | None) -> dict[str, Any]:
    start = int(after) if after and after.isdigit() else 0
    end = len(nodes) if first is None else start + max(first, 0)
    chosen = nodes[start:end]
    return {
        "pageInfo": {"endCursor": str(start + len(chosen)), "hasNextPage": end < len(nodes)},
        "totalCount": len(nodes),
        "edges": [{"node": n, "cursor": str(start + i + 1)} for i, n in enumerate(chosen)],
    }


def project_info(state: EmulatorState, entity: str, project: str) -> dict[str, Any]:
    found = state.get_project(entity, project)
    pid = found.id if found is not None else f"{entity}/{project}"
    return {"id": pid, "internalId": pid, "name": project, "entity": {"name": entity}}


def type_view(ctx: RequestContext, entity: str, project: str, name: str) -> dict[str, Any]:
    store = ctx.state.artifacts

    def collection(info: GraphQLResolveInfo, name: str) -> dict[str, Any] | None:
        found = store.find_collection(entity, project, name, type_name=type_name)
        return collection_view(ctx, found) if found is not None else None

    def collections(info: GraphQLResolveInfo, after: str | None = None, first: int | None = None) -> dict[str, Any]:
        found = [c for c in store.collections.values() if (c.entity, c.project, c.type) == (entity, project, type_name)]
        return _page([collection_view(ctx, c) for c in found], after, first)

    type_name = name
    return {"id": f"ArtifactType:{entity}/{project}/{name}", "name": name, "description": None, "createdAt": None,
            "artifactCollection": collection, "artifactCollections": collections}


def collection_view(ctx: RequestContext, collection: Collection) -> dict[str, Any]:
    store = ctx.state.artifacts

    def membership(info: GraphQLResolveInfo, aliasName: str) -> dict[str, Any] | None:
        version = store.by_alias(collection, aliasName)
        return membership_view(ctx, collection, version) if version is not None else None

    def memberships(info: GraphQLResolveInfo, after: str | None = None, first: int | None = None) -> dict[str, Any]:
        return _page([membership_view(ctx, collection, v) for v in store.collection_versions(collection.id)],
                     after, first)

    def aliases(info: GraphQLResolveInfo, after: str | None = None, first: int | None = None) -> dict[str, Any]:
        found = [alias_view(ctx, collection, a) for v in store.collection_versions(collection.id) for a in v.aliases]
        return _page(found, after, first)

    def latest(info: GraphQLResolveInfo) -> dict[str, Any] | None:
        version = store.latest(collection.id)
        return artifact_view(ctx, version) if version is not None else None

    return {
        "__typename": "ArtifactSequence",
        "id": collection.id,
        "name": collection.name,
        "description": collection.description,
        "createdAt": iso(collection.created_at),
        "project": project_info(ctx.state, collection.entity, collection.project),
        "defaultArtifactType": lambda info: type_view(ctx, collection.entity, collection.project, collection.type),
        "state": "COMMITTED",
        "aliases": aliases,
        "artifactMembership": membership,
        "artifactMemberships": memberships,
        "latestArtifact": latest,
        "tags": {"edges": []},
    }


def alias_view(ctx: RequestContext, collection: Collection, alias: str) -> dict[str, Any]:
    return {"id": f"ArtifactAlias:{collection.id}:{alias}", "alias": alias, "artifactCollectionName": collection.name,
            "artifactCollection": lambda info: collection_view(ctx, collection)}


def file_view(ctx: RequestContext, version: Version, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"File:{version.id}:{name}", "name": name, "displayName": name.rsplit("/", 1)[-1],
        "digest": entry["digest"], "md5": entry["digest"], "sizeBytes": entry["size"],
        "directUrl": _blob_url(ctx, entry["key"]), "url": lambda info, upload=None: _blob_url(ctx, entry["key"]),
        "uploadUrl": None, "uploadHeaders": [], "storagePath": entry["key"], "mimetype": None,
        "artifact": None, "uploadMultipartUrls": None,
    }


def _files(ctx: RequestContext, version: Version):  # type: ignore[no-untyped-def]
    def files(info: GraphQLResolveInfo, after: str | None = None, first: int | None = None,
              names: list[str] | None = None) -> dict[str, Any]:
        chosen = sorted(version.files.items())
        if names:
            chosen = [(n, e) for n, e in chosen if n in names]
        return _page([file_view(ctx, version, n, e) for n, e in chosen], after, first)
    return files


def membership_view(ctx: RequestContext, collection: Collection, version: Version) -> dict[str, Any]:
    return {
        "id": f"ArtifactCollectionMembership:{collection.id}:{version.id}",
        "versionIndex": version.version_index,
        "createdAt": iso(version.created_at),
        "aliases": [alias_view(ctx, collection, a) for a in version.aliases],
        "artifactCollection": lambda info: collection_view(ctx, collection),
        "artifact": lambda info: artifact_view(ctx, version),
        "files": _files(ctx, version),
    }


def artifact_view(ctx: RequestContext, version: Version) -> dict[str, Any]:
    store = ctx.state.artifacts
    collection = store.collections[version.collection_id]

    def manifest(info: GraphQLResolveInfo) -> dict[str, Any] | None:
        if version.manifest_id is None:
            return None
        key = f"manifests/{version.id}"
        return {"id": version.manifest_id, "type": "FULL", "createdAt": iso(version.created_at),
                "digest": version.digest,
                "file": {"id": f"File:{version.manifest_id}", "name": MANIFEST_FILE, "displayName": MANIFEST_FILE,
                         "directUrl": _blob_url(ctx, key), "uploadUrl": ctx.base_url + UPLOAD_ROUTE + quote(key),
                         "uploadHeaders": [], "storagePath": key}}

    return {
        "id": version.id,
        "artifactSequence": lambda info: collection_view(ctx, collection),
        "versionIndex": version.version_index,
        "artifactType": {"id": f"ArtifactType:{collection.type}", "name": collection.type},
        "description": version.description,
        "metadata": json.dumps(version.metadata),
        "ttlDurationSeconds": -1,
        "ttlIsInherited": True,
        "tags": [],
        "historyStep": None,
        "state": version.state,
        "size": version.size,
        "digest": version.digest,
        "digestAlgorithm": "MANIFEST_MD5",
        "commitHash": None,
        "fileCount": len(version.files),
        "createdAt": iso(version.created_at),
        "updatedAt": iso(version.updated_at),
        "storageRegion": None,
        "aliases": [alias_view(ctx, collection, a) for a in version.aliases],
        "currentManifest": manifest,
        "files": _files(ctx, version),
        "artifactMemberships": lambda info, after=None, first=None: _page(
            [membership_view(ctx, collection, version)], after, first),
        "createdBy": None,
    }


def project_fields(state: EmulatorState, project: Project) -> dict[str, Any]:
    """The artifact fields of a project view (merged into `resolvers.project_view`)."""

    def membership(info: GraphQLResolveInfo, name: str) -> dict[str, Any] | None:
        found = state.artifacts.resolve(project.entity, project.name, name)
        return membership_view(_ctx(info), *found) if found is not None else None

    def collection(info: GraphQLResolveInfo, name: str) -> dict[str, Any] | None:
        found = state.artifacts.find_collection(project.entity, project.name, name)
        return collection_view(_ctx(info), found) if found is not None else None

    def artifact_type(info: GraphQLResolveInfo, name: str) -> dict[str, Any] | None:
        if name not in state.artifacts.project_types(project.entity, project.name):
            return None
        return type_view(_ctx(info), project.entity, project.name, name)

    def artifact(info: GraphQLResolveInfo, name: str) -> dict[str, Any] | None:
        found = state.artifacts.resolve(project.entity, project.name, name)
        return artifact_view(_ctx(info), found[1]) if found is not None else None

    return {"internalId": project.id, "artifactCollectionMembership": membership,
            "artifactCollection": collection, "artifactType": artifact_type, "artifact": artifact}


def run_fields(state: EmulatorState, run: Run) -> dict[str, Any]:
    """The fields of a run view that `wandb.Api().run(path)` needs beyond the launch protocol."""
    project = state.get_project(run.entity, run.project)
    number = base64_number(project.id) if project is not None else 0
    def user(info: GraphQLResolveInfo) -> dict[str, Any]:
        found = _ctx(info).user  # the runs of the emulator belong to whoever asks
        return {"id": f"user-{found.username}", "name": found.username, "username": found.username}

    return {"projectId": str(number), "group": None, "commit": None, "readOnly": False, "createdAt": None,
            "heartbeatAt": None, "systemMetrics": "{}", "historyKeys": {"keys": {}, "lastStep": 0},
            "user": user}


def base64_number(encoded: str) -> int:
    """The number in an id of the form base64("Kind:N")."""
    try:
        return int(base64.b64decode(encoded).decode().rpartition(":")[2])
    except (ValueError, UnicodeDecodeError):
        return 0


# --- queries ----------------------------------------------------------------------------------


def q_artifact(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    ctx = _ctx(info)
    version = ctx.state.artifacts.versions.get(id)
    return artifact_view(ctx, version) if version is not None else None


def q_artifact_collection(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    ctx = _ctx(info)
    found = ctx.state.artifacts.collections.get(id)
    return collection_view(ctx, found) if found is not None else None


# --- mutations ------------------------------------------------------------------------------


def _json_object(value: Any, what: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    try:
        doc = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise StateError(f"{what} is not valid JSON: {exc.msg}") from exc
    if not isinstance(doc, dict):
        raise StateError(f"{what} must be a JSON object")
    return doc


def m_create_artifact(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    entity, project = input["entityName"], input["projectName"]
    ctx.state.ensure_project(entity, project)
    names = [input.get("artifactCollectionName"), *(input.get("artifactCollectionNames") or [])]
    name = next((n for n in names if n), "")
    aliases = [a["alias"] for a in input.get("aliases") or [] if a.get("artifactCollectionName") in (None, name)]
    version, _ = ctx.state.artifacts.create_version(
        entity=entity, project=project, type_name=input["artifactTypeName"], collection_name=name,
        digest=input["digest"], description=input.get("description"),
        metadata=_json_object(input.get("metadata"), "metadata"), aliases=aliases,
        client_id=input.get("clientID"), run=input.get("runName"))
    return {"artifact": artifact_view(ctx, version)}


def m_create_artifact_manifest(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    manifest_id, key = ctx.state.artifacts.create_manifest(input["artifactID"])
    return {"artifactManifest": {"id": manifest_id, "type": input.get("type") or "FULL", "digest": input["digest"],
                                 "createdAt": None,
                                 "file": {"id": f"File:{manifest_id}", "name": MANIFEST_FILE,
                                          "directUrl": _blob_url(ctx, key),
                                          "uploadUrl": ctx.base_url + UPLOAD_ROUTE + quote(key),
                                          "uploadHeaders": [], "storagePath": key}}}


def m_update_artifact_manifest(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    version_id = ctx.state.artifacts.manifests.get(input["artifactManifestID"])
    if version_id is None:
        raise StateError(f"artifact manifest {input['artifactManifestID']} not found")
    return m_create_artifact_manifest(_root, info, {"artifactID": version_id, "digest": input.get("digest") or ""})


def m_create_artifact_files(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    store = ctx.state.artifacts
    nodes = []
    for spec in input["artifactFiles"]:
        key = store.create_file(spec["artifactID"], spec["name"], spec["md5"])
        exists = key in store.blobs
        nodes.append({"storagePath": key, "uploadUrl": None if exists else ctx.base_url + UPLOAD_ROUTE + quote(key),
                      "uploadHeaders": [], "uploadMultipartUrls": None, "name": spec["name"],
                      "id": f"File:{spec['artifactID']}:{spec['name']}", "directUrl": _blob_url(ctx, key),
                      "artifact": {"id": spec["artifactID"]}})
    return {"files": _page(nodes, None, None)}


def m_commit_artifact(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    return {"artifact": artifact_view(ctx, ctx.state.artifacts.commit(input["artifactID"]))}


def m_use_artifact(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    return {"artifact": artifact_view(ctx, ctx.state.artifacts.get(input["artifactID"]))}


def m_update_artifact(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    version = ctx.state.artifacts.get(input["artifactID"])
    if input.get("description") is not None:
        version.description = input["description"]
    if input.get("metadata") is not None:
        version.metadata = _json_object(input["metadata"], "metadata")
    return {"artifact": artifact_view(ctx, version)}


def m_delete_run(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    _ctx(info).state.delete_run_by_id(input["id"])
    return {"clientMutationId": input.get("clientMutationId")}


QUERY_RESOLVERS = {"artifact": q_artifact, "artifactCollection": q_artifact_collection}

MUTATION_RESOLVERS = {
    "createArtifact": m_create_artifact,
    "createArtifactManifest": m_create_artifact_manifest,
    "updateArtifactManifest": m_update_artifact_manifest,
    "createArtifactFiles": m_create_artifact_files,
    "commitArtifact": m_commit_artifact,
    "useArtifact": m_use_artifact,
    "updateArtifact": m_update_artifact,
    "deleteRun": m_delete_run,
}
