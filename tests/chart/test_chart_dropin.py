"""Switching from the official chart keeps identity and rights; contradictions are refused.

Official chart 0.13.12 facts: the ServiceAccount `wandb-launch-serviceaccount-<release>` carries
the workload-identity annotations; the official agent names the API-key Secret
`wandb-api-key-<release>` from WANDB_RELEASE_NAME, uncut; Volcano rules were always granted.
"""

from __future__ import annotations

import pytest
from chart_checks import API_KEY, BASIC, deployment, grants, of_kind, one, roles_by_namespace

GSA = "launch@my-project.iam.gserviceaccount.com"
VOLCANO = "batch.volcano.sh/v1alpha1"


def test_service_account_keeps_the_official_name(render) -> None:
    objs = render(files=(BASIC,), values={"serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": GSA}}},
                  release="prod")
    sa = one(objs, "ServiceAccount")
    assert sa["metadata"]["name"] == "wandb-launch-serviceaccount-prod"
    assert sa["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": GSA}
    assert deployment(objs)["spec"]["template"]["spec"]["serviceAccountName"] == "wandb-launch-serviceaccount-prod"
    for binding in of_kind(objs, "RoleBinding"):
        assert binding["subjects"][0]["name"] == "wandb-launch-serviceaccount-prod"


def test_an_existing_service_account_and_no_rbac(render, render_error) -> None:
    objs = render(files=(BASIC,), values={"serviceAccount": {"create": False, "name": "platform-sa"},
                                          "rbac": {"create": False}})
    assert not of_kind(objs, "ServiceAccount")
    assert not of_kind(objs, "Role") and not of_kind(objs, "RoleBinding")
    assert deployment(objs)["spec"]["template"]["spec"]["serviceAccountName"] == "platform-sa"
    assert "serviceAccount.create=false needs serviceAccount.name" in render_error(
        {"serviceAccount": {"create": False}}, files=(BASIC,))


def test_api_key_secret_name_is_the_official_agents_uncut(render) -> None:
    release = "r" * 53  # the longest release name helm allows
    objs = render(files=(BASIC,), release=release)
    name = f"wandb-api-key-{release}"  # kubernetes_runner: "wandb-api-key" + f"-{WANDB_RELEASE_NAME}"
    assert len(name) == 67
    assert {s["metadata"]["name"] for s in of_kind(objs, "Secret")} == {name}
    env = {e["name"]: e for e in deployment(objs)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == name
    assert env["WANDB_RELEASE_NAME"]["value"] == release


@pytest.mark.parametrize(("volcano", "api_versions", "granted"), [
    (None, (), False), (None, (VOLCANO,), True), (False, (VOLCANO,), False), (True, (), True)])
def test_volcano_is_granted_where_the_cluster_serves_it_unless_decided(volcano, api_versions, granted) -> None:
    from chart_checks import CHART, KUBE_VERSION

    from localenv import helm

    values = {} if volcano is None else {"volcano": volcano}
    objs = helm.template(CHART, values=values, values_files=(BASIC,), api_versions=api_versions,
                         kube_version=KUBE_VERSION, namespace="ml")
    role = roles_by_namespace(objs)["ml"]
    assert grants(role, "batch.volcano.sh", "jobs", "create") is granted


def test_rules_for_one_namespace_only(render, render_error) -> None:
    rule = {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": ["create", "get"]}
    values = {"additionalTargetNamespaces": ["train", "infer"], "rbac": {"namespaces": {"train": {"rules": [rule]}}}}
    roles = roles_by_namespace(render(files=(BASIC,), values=values, namespace="ml"))
    assert grants(roles["train"], "kubeflow.org", "pytorchjobs", "create")
    assert not grants(roles["infer"], "kubeflow.org", "pytorchjobs", "create")
    assert not grants(roles["ml"], "kubeflow.org", "pytorchjobs", "create")
    err = render_error({"rbac": {"namespaces": {"elsewhere": {"rules": [rule]}}}}, files=(BASIC,))
    assert "rbac.namespaces.elsewhere: not a target namespace; add it to additionalTargetNamespaces" in err


def test_version_label_is_the_running_image_tag(render) -> None:
    ours = render(files=(BASIC,))
    assert deployment(ours)["metadata"]["labels"]["app.kubernetes.io/version"] == \
        deployment(ours)["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
    official = render(files=(BASIC,), values={"agent": {"image": "wandb/launch-agent:0.17.3"}})
    for obj in official:
        assert obj["metadata"]["labels"]["app.kubernetes.io/version"] == "0.17.3", obj["kind"]
    pinned = render(files=(BASIC,), values={"agent": {"image": "wandb/launch-agent@sha256:" + "a" * 64}})
    assert deployment(pinned)["metadata"]["labels"]["app.kubernetes.io/version"] == "unknown"


KANIKO = "queues: [q]\nenvironment: {type: aws, region: us-east-1}\nbuilder:\n  type: kaniko\n  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r\n"


def test_kaniko_without_context_store_or_pvc_is_refused(render, render_error) -> None:
    err = render_error({"agent": {"apiKey": API_KEY}, "launchConfig": KANIKO})
    assert "launchConfig: builder.build-context-store: a kaniko builder needs a build context store" in err
    render(values={"agent": {"apiKey": API_KEY}, "launchConfig": KANIKO, "kanikoPvcName": "contexts"})
    render(values={"agent": {"apiKey": API_KEY}, "launchConfig": KANIKO + "  build-context-store: s3://b/p\n"})


@pytest.mark.parametrize("queue", ["<queue-name>", "<YOUR QUEUE NAME>", "queue-name>"])
def test_placeholder_queue_names_are_refused(render_error, queue: str) -> None:
    err = render_error({"agent": {"apiKey": API_KEY}, "launchConfig": f"queues:\n  - '{queue}'\n"})
    assert "is not a queue name (replace the placeholder" in err


@pytest.mark.parametrize(("replicas", "min_available", "refused"), [
    (2, "100%", True), (2, "60%", True), (2, "50%", False), (3, "67%", True), (3, "66%", False),
    (4, "75%", False), (4, "76%", True), (2, 1, False), (2, 2, True)])
def test_pdb_that_rounds_up_to_every_replica_is_refused(render, render_error, replicas: int, min_available,
                                                        refused: bool) -> None:
    values = {"replicas": replicas, "agent": {"minAvailable": min_available}}
    if refused:
        err = render_error(values, files=(BASIC,))
        # 100% is already outside the schema's pattern; the rest is the chart's own check
        assert "no agent pod could ever be evicted" in err or "'100%' does not match pattern" in err
    else:
        pdb = one(render(files=(BASIC,), values=values), "PodDisruptionBudget")
        assert pdb["spec"]["minAvailable"] == min_available


def test_existing_azure_storage_secret(render, render_error) -> None:
    objs = render(files=(BASIC,), values={"existingAzureStorageSecret": "azure-key"})
    env = {e["name"]: e for e in deployment(objs)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LAUNCH_AGENT_AZURE_STORAGE_SECRET"]["value"] == "azure-key"
    assert not [s for s in of_kind(objs, "Secret") if "azure" in s["metadata"]["name"]]
    err = render_error({"existingAzureStorageSecret": "azure-key", "agent": {"image": "wandb/launch-agent:0.17.3"}},
                       files=(BASIC,))
    assert "the official image's kaniko jobs read the Secret azure-storage-access-key only" in err
