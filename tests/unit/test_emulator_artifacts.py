"""The emulator's artifact store: seeding through the admin API in the stored form of an SDK
upload, aliases and versions, de-duplication by digest, persistence in the state file, and the
direct URLs that serve the files."""

from __future__ import annotations

import json
import urllib.request

import pytest

from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.artifact_store import b64_md5
from localenv.wandb_emulator.client import AdminCallError, EmulatorClient

MEMBERSHIP = """query ArtifactMembershipByName($entity: String!, $project: String!, $name: String!) {
  project(name: $project, entityName: $entity) {
    artifactCollectionMembership(name: $name) {
      versionIndex aliases { alias } artifact { id digest size fileCount state artifactType { name }
        currentManifest { file { directUrl } } files { edges { node { name directUrl } } } }
    }
  }
}"""


@pytest.fixture
def emu(tmp_path):
    server, key = start_emulator(entity="acme", username="acme", state_file=tmp_path / "state.json")
    try:
        yield EmulatorClient(server.url, key), tmp_path / "state.json"
    finally:
        server.stop()


def seed(client: EmulatorClient, name: str, files: dict, **extra) -> dict:
    return client.call("POST", "/_emulator/artifacts", {"entity": "acme", "project": "p", "type": "job",
                                                        "name": name, "files": files, **extra})


def membership(client: EmulatorClient, name: str) -> dict | None:
    data = client.graphql(MEMBERSHIP, {"entity": "acme", "project": "p", "name": name})
    assert "errors" not in data, data
    return data["data"]["project"]["artifactCollectionMembership"]


def test_seeded_versions_get_indexes_and_aliases_that_move(emu):
    client, _ = emu
    first = seed(client, "j", {"wandb-job.json": "{}"}, aliases=["prod"])
    again = seed(client, "j", {"wandb-job.json": "{}"})
    second = seed(client, "j", {"wandb-job.json": "{\"a\": 1}"})
    assert (first["name"], again["id"], second["name"]) == ("j:v0", first["id"], "j:v1")
    assert membership(client, "j:latest")["versionIndex"] == 1
    assert membership(client, "j")["versionIndex"] == 1
    assert membership(client, "j:v0")["versionIndex"] == 0
    assert membership(client, "j:prod")["versionIndex"] == 0
    assert membership(client, "j:v7") is None and membership(client, "nothing:latest") is None


def test_files_are_served_on_direct_urls_with_their_digests(emu):
    client, _ = emu
    body = b"\x00binary\xff" * 100
    seed(client, "code", {"train.py": "print(1)\n", "data.bin": {"base64": __import__("base64").b64encode(body).decode()}},
         type="code")
    got = membership(client, "code:latest")
    art = got["artifact"]
    assert art["artifactType"]["name"] == "code" and art["state"] == "COMMITTED"
    assert art["fileCount"] == 2 and art["size"] == len(body) + 9
    urls = {e["node"]["name"]: e["node"]["directUrl"] for e in art["files"]["edges"]}
    with urllib.request.urlopen(urls["data.bin"], timeout=10) as resp:
        assert resp.read() == body
    with urllib.request.urlopen(art["currentManifest"]["file"]["directUrl"], timeout=10) as resp:
        manifest = json.loads(resp.read())
    assert manifest["contents"]["data.bin"] == {"digest": b64_md5(body), "size": len(body)}


def test_artifacts_survive_a_restart_with_the_state_file(emu, tmp_path):
    client, state_file = emu
    seed(client, "kept", {"wandb-job.json": "{}"})
    server, key = start_emulator(state_file=state_file)
    try:
        again = EmulatorClient(server.url, key)
        assert membership(again, "kept:latest")["versionIndex"] == 0
    finally:
        server.stop()


@pytest.mark.parametrize("body", [
    {"entity": "acme", "project": "p", "type": "job", "name": "x"},
    {"entity": "acme", "project": "p", "type": "job", "name": "x", "files": {"a": 3}},
    {"entity": "acme", "project": "p", "name": "x", "files": {"a": "b"}},
])
def test_a_bad_seed_is_refused_with_the_field(emu, body):
    client, _ = emu
    with pytest.raises(AdminCallError) as err:
        client.call("POST", "/_emulator/artifacts", body)
    assert err.value.status == 400


def test_a_collection_keeps_its_type(emu):
    client, _ = emu
    seed(client, "typed", {"a": "b"})
    with pytest.raises(AdminCallError, match="has type job"):
        seed(client, "typed", {"a": "c"}, type="code")
