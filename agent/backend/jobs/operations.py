"""The artifact operations of job resolution and source fetching. Each is the official SDK's
operation of the same name (`wandb.Api().job` / `Artifact.download`) with a subset of its fields
and the same variables, so that it works against the real service."""

from __future__ import annotations

Q_MEMBERSHIP_BY_NAME = """query ArtifactMembershipByName($entity: String!, $project: String!, $name: String!) {
  project(name: $project, entityName: $entity) {
    artifactCollectionMembership(name: $name) {
      versionIndex
      artifactCollection { name }
      artifact { id digest state size fileCount versionIndex artifactType { name } }
    }
  }
}"""

Q_ARTIFACT_BY_ID = """query ArtifactByID($id: ID!) {
  artifact(id: $id) {
    id
    digest
    state
    size
    fileCount
    versionIndex
    artifactType { name }
    artifactSequence { name project { name entity { name } } }
  }
}"""

Q_MEMBERSHIP_FILE_URLS = """query GetArtifactMembershipFileUrls($entity: String!, $project: String!,
    $collection: String!, $alias: String!, $cursor: String, $perPage: Int) {
  project(name: $project, entityName: $entity) {
    artifactCollection(name: $collection) {
      artifactMembership(aliasName: $alias) {
        files(after: $cursor, first: $perPage) {
          pageInfo { endCursor hasNextPage }
          edges { node { name directUrl } }
        }
      }
    }
  }
}"""

Q_FETCH_MANIFEST = """query FetchArtifactManifest($id: ID!) {
  artifact(id: $id) {
    currentManifest { file { directUrl } }
  }
}"""

ARTIFACT_OPERATIONS = {
    "ArtifactMembershipByName": Q_MEMBERSHIP_BY_NAME,
    "ArtifactByID": Q_ARTIFACT_BY_ID,
    "GetArtifactMembershipFileUrls": Q_MEMBERSHIP_FILE_URLS,
    "FetchArtifactManifest": Q_FETCH_MANIFEST,
}
