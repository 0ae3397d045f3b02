"""`helm upgrade --install` from the official chart 0.13.12 to this one keeps identity.

The objects an official install leaves (tests/fixtures/official-launch-agent-0.13.12.yaml) are
installed as a Helm release on the cluster, exactly as named and labelled there; then this chart
is upgraded over the same release with the same values. The ServiceAccount (with its
workload-identity annotation), the API-key Secret in every target namespace and the agent's
namespace are kept, not re-created; every other object of the official release is removed by
helm, and nothing of the release is left that the new manifest does not own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from cluster_helpers import CHART, ROOT, release_name, values_file
from pytest_helm_charts.k8s.deployment import wait_for_deployments_to_run

from localenv.pytest_plugin import Kube

FIXTURE = ROOT / "tests" / "fixtures" / "official-launch-agent-0.13.12.yaml"
API_KEY = "0123456789abcdef0123456789abcdef01234567"
GSA = "launch-agent@my-project.iam.gserviceaccount.com"


def _fill(node: Any, subs: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {_fill(k, subs): _fill(v, subs) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, subs) for v in node]
    if isinstance(node, str):
        for key, value in subs.items():
            node = node.replace("{" + key + "}", value)
    return node


def official_release(tmp_path: Path, release: str, agent_ns: str, extra_ns: str) -> tuple[Path, dict[str, Any]]:
    """A chart that renders exactly the fixture's objects, and the user's values."""
    facts = yaml.safe_load(FIXTURE.read_text())
    subs = {"release": release, "namespace": agent_ns, "extra_target": extra_ns, "api_key": API_KEY, "gsa": GSA}
    objects = []
    for obj in facts["objects"]:
        targets = [agent_ns, extra_ns] if obj.pop("per_target", False) else [agent_ns]
        for target in targets:
            objects.append(_fill(obj, {**subs, "target": target}))
    chart = tmp_path / "official-launch-agent"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": facts["chart"]["name"],
                                                      "version": facts["chart"]["version"]}))
    (chart / "templates" / "objects.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return chart, _fill(facts["values"], subs)


def _uid(kube: Kube, kind: str, name: str, ns: str | None = None) -> str:
    return str(kube.get(kind, name, namespace=ns)["metadata"]["uid"])


def _exists(kube: Kube, kind: str, name: str, ns: str | None = None) -> bool:
    args = ["get", kind, name, "--ignore-not-found", "-o", "name"] + (["-n", ns] if ns else [])
    return bool(kube.kubectl(*args).stdout.strip())


def _release_objects(kube: Kube, release: str, namespaces: list[str]) -> set[str]:
    """kind/namespace/name of every object helm marked as belonging to the release."""
    found = set()
    for scope in [*namespaces, None]:
        kinds = "serviceaccounts,secrets,configmaps,roles,rolebindings,deployments,poddisruptionbudgets,services," \
                "networkpolicies" if scope else "clusterroles,clusterrolebindings"
        args = ["get", kinds, "-o", "json"] + (["-n", scope] if scope else [])
        for item in json.loads(kube.kubectl(*args).stdout)["items"]:
            meta = item["metadata"]
            if (meta.get("annotations") or {}).get("meta.helm.sh/release-name") == release:
                found.add(f"{item['kind']}/{meta.get('namespace', '')}/{meta['name']}")
    return found


def _manifest_objects(kube: Kube, release: str, ns: str) -> set[str]:
    out = kube.helm("get", "manifest", release, "-n", ns).stdout
    return {f"{o['kind']}/{o['metadata'].get('namespace', ns if o['kind'] not in ('ClusterRole',) else '')}/"
            f"{o['metadata']['name']}" for o in yaml.safe_load_all(out) if o}


def test_upgrade_from_the_official_chart_keeps_identity_and_orphans_nothing(
        kube: Kube, kube_cluster, namespace, release, tmp_path: Path) -> None:
    agent_ns, extra_ns = namespace("mig"), namespace("mig-t")
    rel = release_name("mig")
    release.append((rel, agent_ns))
    official, values = official_release(tmp_path, rel, agent_ns, extra_ns)
    kube.helm("install", rel, str(official), "-n", agent_ns, "--wait", "--timeout", "180s")
    sa = f"wandb-launch-serviceaccount-{rel}"
    secret = f"wandb-api-key-{rel}"
    before = {"sa": _uid(kube, "serviceaccount", sa, agent_ns),
              "ns": _uid(kube, "namespace", agent_ns),
              **{f"secret/{n}": _uid(kube, "secret", secret, n) for n in (agent_ns, extra_ns)}}

    kube.helm("upgrade", "--install", rel, str(CHART), "-n", agent_ns, "-f", str(values_file(tmp_path, values)),
              "--wait", "--timeout", "180s")

    # identity kept: the same objects, not re-created ones
    assert _uid(kube, "serviceaccount", sa, agent_ns) == before["sa"]
    annotations = kube.get("serviceaccount", sa, namespace=agent_ns)["metadata"]["annotations"]
    assert annotations["iam.gke.io/gcp-service-account"] == GSA
    assert _uid(kube, "namespace", agent_ns) == before["ns"]
    for n in (agent_ns, extra_ns):
        assert _uid(kube, "secret", secret, n) == before[f"secret/{n}"]
    # the agent runs as that ServiceAccount (pytest-helm-charts waits for the Deployment)
    deployment = f"{rel}-launch-agent"
    [deploy] = wait_for_deployments_to_run(kube_cluster.kube_client, [deployment], agent_ns, timeout_sec=180)
    assert deploy.obj["spec"]["template"]["spec"]["serviceAccountName"] == sa
    # the official objects this chart does not render are gone ...
    for kind, name, ns in (("clusterrole", f"wandb-job-creator-{rel}", None),
                           ("role", f"wandb-launch-agent-{rel}", agent_ns),
                           ("rolebinding", f"wandb-launch-role-binding-{rel}", agent_ns),
                           ("rolebinding", f"wandb-launch-cluster-role-binding-{rel}", agent_ns),
                           ("rolebinding", f"wandb-launch-cluster-role-binding-{rel}", extra_ns),
                           ("configmap", f"wandb-launch-configmap-{rel}", agent_ns),
                           ("deployment", f"launch-agent-{rel}", agent_ns),
                           ("poddisruptionbudget", f"launch-agent-{rel}", agent_ns)):
        assert not _exists(kube, kind, name, ns), f"{kind} {name} of the official release was left behind"
    # ... and every object of the release is one the new manifest owns
    owned = _manifest_objects(kube, rel, agent_ns)
    left = _release_objects(kube, rel, [agent_ns, extra_ns])
    assert left <= owned, f"orphaned: {sorted(left - owned)}"
    assert {f"ServiceAccount/{agent_ns}/{sa}", f"Secret/{agent_ns}/{secret}", f"Secret/{extra_ns}/{secret}"} <= owned
