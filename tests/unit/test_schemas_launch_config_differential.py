"""Differential test: schemas/launch-config.schema.json against the official wandb agent.

The oracle is the official agent's own start-up code (tests/unit/official_agent_config.py):
resolve_agent_config, the CLI's non-empty queues check, the pydantic AgentConfig model and the
LaunchAgent constructor's parsing of max_jobs, max_schedulers and verbosity. Our schema must
accept exactly what that accepts.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from official_agent_config import official_verdict

import schemas


def official_accepts(raw: Any) -> bool:
    """Would the official agent start with a config file holding this data (no flags, no env overrides)?"""
    text = "" if raw is None else yaml.safe_dump(raw, allow_unicode=True)
    return official_verdict(text).accepted


VALIDATOR = schemas.validator("launch-config")


def ours_accepts(raw: Any) -> bool:
    if raw is None:
        return False  # an empty file has no queues
    return bool(VALIDATOR.is_valid(raw))


# (yaml text, what both must say). At least 30, valid and invalid, covering every field and quirk.
CORPUS: list[tuple[str, bool]] = [
    ("queues: [q]", True),
    ("queues: [q]\nentity: team", True),
    ("queues: [a, b, c]\nentity: null\nmax_jobs: -1", True),
    ("queues: []", False),
    ("entity: team", False),
    ("", False),
    ("- q", False),
    ("just a string", False),
    ("queue: q", False),
    ("queues: [q]\nqueue: r", False),
    ("queues: [q]\nproject: p", False),
    ("queues: q", False),
    ("queues: [1]", False),
    ("queues: [q]\nentity: 5", False),
    ("queues: [q]\nmax_jobs: '5'", True),
    ("queues: [q]\nmax_jobs: 5.0", True),
    ("queues: [q]\nmax_jobs: '5.0'", False),
    ("queues: [q]\nmax_jobs: -2", False),
    ("queues: [q]\nmax_jobs: '-1'", True),
    ("queues: [q]\nmax_jobs: 0", True),
    ("queues: [q]\nmax_schedulers: '1_0'", True),
    ("queues: [q]\nverbosity: '1'", False),
    ("queues: [q]\nverbosity: null", False),
    ("queues: [q]\nmax_jobs: 5.5", False),
    ("queues: [q]\nmax_jobs: five", False),
    ("queues: [q]\nmax_jobs: true", True),
    ("queues: [q]\nmax_jobs: null", True),
    ("queues: [q]\nmax_schedulers: ' 3 '", True),
    ("queues: [q]\nverbosity: 2\nstopped_run_timeout: 120", True),
    ("queues: [q]\nstopped_run_timeout: 1m", False),
    ("queues: [q]\nsecure_mode: yes", True),
    ("queues: [q]\nsecure_mode: 'on'", True),
    ("queues: [q]\nsecure_mode: 'maybe'", False),
    ("queues: [q]\nsecure_mode: 2", False),
    ("queues: [q]\nenvironment: {type: aws, region: us-east-1}", True),
    ("queues: [q]\nenvironment: {type: gcp}", False),
    ("queues: [q]\nenvironment: {type: azure, region: null}", True),
    ("queues: [q]\nenvironment: {type: local, region: x}", False),
    ("queues: [q]\nenvironment: {type: AWS, region: x}", False),
    ("queues: [q]\nenvironment: {type: aws, region: x, profile: dev}", True),
    ("queues: [q]\nenvironment: null", True),
    ("queues: [q]\nenvironment: aws", False),
    ("queues: [q]\nregistry: {type: ecr, uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/repo}", True),
    ("queues: [q]\nregistry: {type: ecr, uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:v1}", False),
    ("queues: [q]\nregistry: {type: local}", False),
    ("queues: [q]\nregistry: {uri: registry.local:5000/img}", True),
    ("queues: [q]\nregistry: {type: gcr, uri: https://us-docker.pkg.dev/proj/repo/image}", True),
    ("queues: [q]\nregistry: {uri: us-docker.pkg.dev/proj/repo}", False),
    ("queues: [q]\nregistry: {uri: us-docker.pkg.dev/proj/repo/image:tag}", False),
    ("queues: [q]\nregistry: {uri: US-DOCKER.PKG.DEV/proj/repo/}", False),
    ("queues: [q]\nregistry: {uri: myreg.azurecr.io/repo}", True),
    ("queues: [q]\nregistry: {uri: myreg.azurecr.io/repo:latest}", False),
    ("queues: [q]\nregistry: {uri: my-reg.azurecr.io/repo:latest}", True),
    ("queues: [q]\nregistry: {type: acr, repo_name: x, anything: 1}", True),
    ("queues: [q]\nbuilder: {type: kaniko, build-context-store: s3://bucket/path}", True),
    ("queues: [q]\nbuilder: {type: kaniko, build-context-store: gs://bucket}", True),
    ("queues: [q]\nbuilder: {build-context-store: https://acct.blob.core.windows.net/ctr/x}", True),
    ("queues: [q]\nbuilder: {build-context-store: ftp://bucket}", False),
    ("queues: [q]\nbuilder: {build-context-store: s3://}", False),
    ("queues: [q]\nbuilder: {build_context_store: ftp://ignored}", True),
    ("queues: [q]\nbuilder: {type: buildah}", False),
    ("queues: [q]\nbuilder: {type: noop, platform: linux/arm64}", True),
    ("queues: [q]\nbuilder: {platform: windows/amd64}", False),
    ("queues: [q]\nbuilder: {destination: 1.dkr.ecr.eu-west-1.amazonaws.com/a/b}", True),
    ("queues: [q]\nbuilder: {destination: 1.dkr.ecr.eu-west-1.amazonaws.com/a@sha256:abc}", False),
    ("queues: [q]\nbuilder: {destination: ghcr.io/org/img:tag}", True),
    ("queues: [q]\nbuilder: {secret-name: 5}", False),
    ("queues: [q]\nbuilder: {kaniko-image: gcr.io/kaniko-project/executor:v1.23.2, kaniko-config: 5}", True),
    ("queues: [q]\nbuilder: null\nregistry: null", True),
    ("queues: [q]\nbuilder: []", False),
    ("1: x\nqueues: [q]", False),
]


def test_corpus_is_large_and_mixed() -> None:
    assert len(CORPUS) >= 30
    assert {expected for _, expected in CORPUS} == {True, False}
    assert len({text for text, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("text", "expected"), CORPUS, ids=[f"c{i}" for i in range(len(CORPUS))])
def test_schema_agrees_with_official_agent(text: str, expected: bool) -> None:
    raw = yaml.safe_load(text)
    assert official_accepts(raw) is expected, "the corpus label is wrong about the official agent"
    assert ours_accepts(raw) is expected


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 12), st.floats(allow_nan=False, allow_infinity=True),
    st.sampled_from(["5", " 7 ", "1_000", "5.0", "5.", "1e3", "yes", "No", "oN", "t", "", "x", "true ",
                     "aws", "gcp", "azure", "local", "ecr", "acr", "gcr", "kaniko", "noop", "docker",
                     "linux/amd64", "s3://b/p", "gs://b", "s3://", "https://a.blob.core.windows.net/c/x",
                     "1.dkr.ecr.us-east-1.amazonaws.com/r", "1.dkr.ecr.us-east-1.amazonaws.com/r:t",
                     "us-docker.pkg.dev/p/r/i", "us-docker.pkg.dev/p/r", "us-docker.pkg.dev/p/r/i:t",
                     "a.azurecr.io/r", "a.azurecr.io/r:t", "https://a.azurecr.io/r", "ghcr.io/x/y:z"]),
)
_section_keys = ["type", "region", "uri", "destination", "platform", "build-context-store", "secret-name",
                 "build_context_store", "extra"]
_sections = st.one_of(_scalars, st.dictionaries(st.sampled_from(_section_keys), _scalars, max_size=4))
_top_keys = ["queues", "entity", "max_jobs", "max_schedulers", "secure_mode", "verbosity",
             "stopped_run_timeout", "environment", "registry", "builder", "queue", "project"]
_values = st.one_of(_scalars, _sections, st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3))
_configs = st.dictionaries(st.sampled_from(_top_keys), _values, max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_configs)
def test_schema_agrees_on_generated_configs(raw: dict[str, Any]) -> None:
    assert ours_accepts(raw) is official_accepts(raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=12), st.from_regex(r"\A[ \t]*[+-]?[0-9_]{1,4}(\.0*)?[ \t]*\Z")))
def test_integer_strings_agree(text: str) -> None:
    raw = {"queues": ["q"], "max_jobs": text}
    assert ours_accepts(raw) is official_accepts(raw)


@settings(max_examples=300, deadline=None)
@given(st.builds(lambda pre, host, path: pre + host + path,
                 st.sampled_from(["", "https://", "https://https://", "HTTPS://"]),
                 st.sampled_from(["us-docker.pkg.dev/", "a.azurecr.io/", "1.dkr.ecr.r-1.amazonaws.com/",
                                  "eu-Docker.Pkg.Dev/", "my-reg.azurecr.io/", "quay.io/"]),
                 st.text(alphabet="ab-_/:.@", max_size=10)))
def test_registry_uris_agree(uri: str) -> None:
    for raw in ({"queues": ["q"], "registry": {"uri": uri}}, {"queues": ["q"], "builder": {"destination": uri}}):
        assert ours_accepts(raw) is official_accepts(raw), uri
