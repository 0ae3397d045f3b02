"""Differential test of the Pod Security Standards against the real API server's PodSecurity admission.

Two comparisons, for every pod spec of the corpus and each of `baseline` and `restricted`:

1. **The policy function** (`agent.manifest.pss_violations`) on the pod exactly as written versus the
   API server on the same pod (server-side dry-run create in a namespace labelled
   `pod-security.kubernetes.io/enforce=<level>`; ephemeral containers through the
   `pods/ephemeralcontainers` subresource, the only way they reach a pod). Verdicts must be equal.
2. **The agent path** (`build_workload` of a Job queue config holding the pod): the agent writes its
   security defaults where the config is silent, then checks. Its verdict must equal the API
   server's on the pod the agent would submit: an accepted item's pod template is admitted, a
   refused item's defaulted pod is refused.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pss_corpus import ALLOWED_SECRETS, CORPUS
from security_helpers import Api, write_figures

from agent.manifest import (
    ManifestError,
    ManifestSettings,
    apply_security_defaults,
    build_workload,
    pod_templates,
    pss_violations,
)
from localenv.pytest_plugin import Kube

LEVELS = ("baseline", "restricted")
ENFORCE = "pod-security.kubernetes.io/enforce"
RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def namespaces(kube: Kube) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    made = {level: kube.create_namespace(f"pss-{level}-{suffix}", {ENFORCE: level})
            for level in ("privileged", *LEVELS)}
    yield made
    for ns in made.values():
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    _write()


def _write() -> None:
    if not RESULTS:
        return
    agree = {level: sum(1 for r in RESULTS.values() if r[f"function_{level}"] == r[f"server_{level}"])
             for level in LEVELS}
    agent = [r for r in RESULTS.values() if "agent_baseline" in r]
    write_figures("pss", {
        "corpus": len(RESULTS),
        "verdicts": len(RESULTS) * len(LEVELS),
        "function_agrees": sum(agree.values()),
        "function_agrees_by_level": agree,
        "agent_path_compared": len(agent) * len(LEVELS),
        "agent_path_agrees": sum(1 for r in agent for level in LEVELS
                                 if r[f"agent_{level}"] == r[f"agent_server_{level}"]),
        "refused_by_server": {level: sum(1 for r in RESULTS.values() if not r[f"server_{level}"])
                              for level in LEVELS},
    })


def _pod_body(name: str, pod: dict[str, Any], *, ephemeral: bool) -> dict[str, Any]:
    meta = copy.deepcopy(pod.get("metadata") or {})
    meta["name"] = name
    spec = copy.deepcopy(pod["spec"])
    if not ephemeral:
        spec.pop("ephemeralContainers", None)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def admitted(api: Api, ns: str, pod: dict[str, Any]) -> tuple[bool, str]:
    """The API server's verdict: (admitted, message). An invalid pod fails the test."""
    name = f"p-{uuid.uuid4().hex[:8]}"
    eph = (pod["spec"].get("ephemeralContainers") or [])
    if not eph:
        status, body = api.request("POST", f"/api/v1/namespaces/{ns}/pods", _pod_body(name, pod, ephemeral=False),
                                   [("dryRun", "All")])
    else:  # ephemeral containers only reach a pod through its subresource
        status, body = api.request("POST", f"/api/v1/namespaces/{ns}/pods", _pod_body(name, pod, ephemeral=False))
        assert status == 201, f"the base pod of an ephemeral-container case was not created: {body}"
        patch = {"spec": {"ephemeralContainers": eph}}
        status, body = api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/ephemeralcontainers", patch,
                                   [("dryRun", "All")], content_type="application/strategic-merge-patch+json")
        api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", {"gracePeriodSeconds": 0})
    message = str(body.get("message", ""))
    if status in (200, 201):
        return True, ""
    assert status == 403 and "PodSecurity" in message, f"not a PodSecurity verdict ({status}): {message}"
    return False, message


def agent_settings(level: str) -> ManifestSettings:
    return ManifestSettings(agent_namespace="wandb", security_level=level, allowed_secrets=ALLOWED_SECRETS)


def agent_verdict(pod: dict[str, Any], level: str) -> tuple[bool, dict[str, Any]] | None:
    """(accepted, the pod the API server should judge), or None when refused by a non-PSS rule."""
    config = {"spec": {"template": copy.deepcopy(pod)}}
    spec = {"entity": "e", "project": "p", "run_id": "r1", "docker": {"docker_image": "registry.local/run:1"},
            "resource_args": {"kubernetes": config}}
    try:
        objs = build_workload(spec, item_id="item-1", queue="q", settings=agent_settings(level))
    except ManifestError as exc:
        if not exc.rule.startswith("pod-security"):
            return None
        defaulted = copy.deepcopy(pod)
        apply_security_defaults(defaulted["spec"], agent_settings(level))
        return False, defaulted
    template = next(pod_templates(objs[-1]))
    return True, {"metadata": {"annotations": template["metadata"].get("annotations") or {}},
                  "spec": template["spec"]}


@pytest.mark.parametrize(("name", "pod"), CORPUS, ids=[c[0] for c in CORPUS])
def test_verdicts_equal_the_api_servers(api: Api, namespaces: dict[str, str], name: str, pod: dict[str, Any]):
    ok, message = admitted(api, namespaces["privileged"], pod)
    assert ok, f"the corpus pod is not valid for the API server: {message}"
    record: dict[str, Any] = {}
    for level in LEVELS:
        server, message = admitted(api, namespaces[level], pod)
        ours = pss_violations(pod.get("metadata"), pod["spec"], level)
        record[f"server_{level}"], record[f"function_{level}"] = server, not ours
        assert (not ours) == server, (f"{level}: API server {'admits' if server else 'refuses'} ({message}); "
                                      f"policy function says {ours or 'admitted'}")
        verdict = agent_verdict(pod, level)
        if verdict is None or pod["spec"].get("ephemeralContainers"):
            continue
        accepted, submitted = verdict
        server_on_submitted, message = admitted(api, namespaces[level], submitted)
        record[f"agent_{level}"], record[f"agent_server_{level}"] = accepted, server_on_submitted
        assert accepted == server_on_submitted, (
            f"{level}: the agent {'accepts' if accepted else 'refuses'} the item but the API server "
            f"{'admits' if server_on_submitted else 'refuses'} the pod it would submit ({message})")
    RESULTS[name] = record


def test_corpus_is_large_and_mixed():
    assert len(CORPUS) >= 60
    names = [n for n, _ in CORPUS]
    assert len(names) == len(set(names))
    for level in LEVELS:
        refused = sum(1 for _, p in CORPUS if pss_violations(p.get("metadata"), p["spec"], level))
        assert 15 <= refused <= len(CORPUS) - 15, (level, refused)
