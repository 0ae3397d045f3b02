"""Each derivation of `values`: namespaces, RBAC per kind, kaniko, identity, secrets, consistency checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from generator_helpers import AWS_ROLE, AZURE_ID, EXAMPLES, GCP_SA, run, write

import schemas
from generator.rbac import LAUNCH_VERBS

NOOP = "queues: [q]\nbuilder: {type: noop}\n"
POD = "spec: {template: {spec: {containers: [{image: x}]}}}\n"  # what the agent needs in a custom resource
LAUNCH = list(LAUNCH_VERBS)


def values(tmp_path: Path, config: str = NOOP, queues: dict[str, str] | None = None, *flags: str,
           environ: dict[str, str] | None = None) -> dict[str, Any]:
    argv = ["values", "-c", write(tmp_path, "launch-config.yaml", config)]
    for name, text in (queues or {}).items():
        argv += ["-q", write(tmp_path, name, text)]
    res = run([*argv, *flags], environ)
    assert res.code == 0, res.err
    data = yaml.safe_load(res.out)
    assert schemas.validator("values").is_valid(data)
    return data


def warnings(tmp_path: Path, config: str = NOOP, *flags: str) -> list[str]:
    """The warning lines of a successful `values` run."""
    res = run(["values", "-c", write(tmp_path, "launch-config.yaml", config), *flags])
    assert res.code == 0, res.err
    return [line for line in res.lines if ": warning: " in line]


def errors(tmp_path: Path, config: str = NOOP, queues: dict[str, str] | None = None, *flags: str,
           environ: dict[str, str] | None = None) -> list[str]:
    argv = ["values", "-c", write(tmp_path, "launch-config.yaml", config)]
    for name, text in (queues or {}).items():
        argv += ["-q", write(tmp_path, name, text)]
    res = run([*argv, *flags], environ)
    assert res.code == 2 and res.out == "" and "Traceback" not in res.err
    return res.lines


# ------------------------------------------------------------------------------ launchConfig


def test_launch_config_is_the_file_verbatim(tmp_path: Path) -> None:
    text = "# our agent\nqueues:\n  - q   # the only one\nmax_jobs: 3\nsecure_mode: yes\n"
    assert values(tmp_path, text)["launchConfig"] == text


def test_odd_launch_config_text_survives(tmp_path: Path) -> None:
    text = "queues: ['#not a comment', \"x: y\"]\nentity: |\n    indented\n\n\n"
    assert values(tmp_path, text)["launchConfig"] == text


# ------------------------------------------------------------------------------- namespaces


def test_namespaces_from_every_form(tmp_path: Path) -> None:
    queues = {
        "meta.yaml": "metadata:\n  namespace: team-a\n",
        "legacy.yaml": "namespace: team-b\n",
        "wrapped.yaml": "kubernetes:\n  metadata:\n    namespace: team-c\n",
        "cr.yaml": "apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {namespace: team-d}\n" + POD,
        "both.yaml": "namespace: ignored\nmetadata:\n  namespace: team-e\n",
        "none.yaml": "spec: {}\n",
        "agent-ns.yaml": "metadata: {namespace: launch}\n",
    }
    data = values(tmp_path, NOOP, queues, "--namespace", "launch")
    assert data["namespace"] == "launch"
    assert data["additionalTargetNamespaces"] == ["team-a", "team-b", "team-c", "team-d", "team-e"]


def test_no_queue_configs_means_only_the_agent_namespace(tmp_path: Path) -> None:
    data = values(tmp_path)
    assert data["additionalTargetNamespaces"] == [] and "namespace" not in data


def test_official_image_sends_namespace_less_queues_to_default(tmp_path: Path) -> None:
    data = values(tmp_path, NOOP, {"q.yaml": "spec: {}\n"}, "--namespace", "launch",
                  "--agent-image", "wandb/launch-agent:0.22.1")
    assert data["additionalTargetNamespaces"] == ["default"]


# ------------------------------------------------------------------------------------- RBAC


def test_job_queues_need_no_extra_rules(tmp_path: Path) -> None:
    data = values(tmp_path, NOOP, {"job.yaml": "apiVersion: batch/v1\nkind: Job\nspec: {}\n"})
    assert data["rbac"] == {"extraRules": [], "agentNamespaceRules": [], "namespaces": {}}
    assert data["volcano"] is False


@pytest.mark.parametrize(("api_version", "kind", "group", "plural"), [
    ("kubeflow.org/v1", "PyTorchJob", "kubeflow.org", "pytorchjobs"),
    ("kubeflow.org/v1", "TFJob", "kubeflow.org", "tfjobs"),
    ("kubeflow.org/v2beta1", "MPIJob", "kubeflow.org", "mpijobs"),
    ("kubeflow.org/v1", "XGBoostJob", "kubeflow.org", "xgboostjobs"),
    ("kubeflow.org/v1", "PaddleJob", "kubeflow.org", "paddlejobs"),
    ("kubeflow.org/v1", "JAXJob", "kubeflow.org", "jaxjobs"),
    ("batch.volcano.sh/v1alpha1", "Job", "batch.volcano.sh", "jobs"),
    ("jobset.x-k8s.io/v1alpha2", "JobSet", "jobset.x-k8s.io", "jobsets"),
    ("ray.io/v1", "RayJob", "ray.io", "rayjobs"),
    ("trainer.kubeflow.org/v1alpha1", "TrainJob", "trainer.kubeflow.org", "trainjobs"),
])
def test_custom_resource_rules(tmp_path: Path, api_version: str, kind: str, group: str, plural: str) -> None:
    data = values(tmp_path, NOOP, {"cr.yaml": f"apiVersion: {api_version}\nkind: {kind}\n" + POD})
    assert data["rbac"]["agentNamespaceRules"] == [{"apiGroups": [group], "resources": [plural], "verbs": LAUNCH}]
    assert data["rbac"]["extraRules"] == [] and data["rbac"]["namespaces"] == {}


def test_rules_are_merged_per_group_and_deduplicated(tmp_path: Path) -> None:
    queues = {
        "a.yaml": "apiVersion: kubeflow.org/v1\nkind: PyTorchJob\n" + POD,
        "b.yaml": "apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {namespace: other}\n" + POD,
        "c.yaml": "apiVersion: kubeflow.org/v1\nkind: TFJob\n" + POD,
        "d.yaml": "apiVersion: batch.volcano.sh/v1alpha1\nkind: Job\n" + POD,
    }
    data = values(tmp_path, NOOP, queues)
    assert data["rbac"]["agentNamespaceRules"] == [
        {"apiGroups": ["batch.volcano.sh"], "resources": ["jobs"], "verbs": LAUNCH},
        {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs", "tfjobs"], "verbs": LAUNCH},
    ]
    # each kind only where a queue sends it: `other` gets PyTorchJob, not TFJob or Volcano
    assert data["rbac"]["namespaces"] == {
        "other": {"rules": [{"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": LAUNCH}]}}
    assert data["additionalTargetNamespaces"] == ["other"] and data["rbac"]["extraRules"] == []


def test_unknown_kind_needs_plural_flag(tmp_path: Path) -> None:
    queue = {"w.yaml": "apiVersion: example.com/v1\nkind: Workload\n" + POD}
    lines = errors(tmp_path, NOOP, queue)
    assert len(lines) == 1 and lines[0].endswith(
        "w.yaml:2:7: kind: no known resource plural for Workload in API group example.com; pass "
        "--plural Workload=<plural> (kubectl api-resources --api-group=example.com lists it)")
    data = values(tmp_path, NOOP, queue, "--plural", "Workload=workloadz")
    assert data["rbac"]["agentNamespaceRules"] == [
        {"apiGroups": ["example.com"], "resources": ["workloadz"], "verbs": LAUNCH}]
    data = values(tmp_path, NOOP, queue, "--plural", "Workload.example.com=wls")
    assert data["rbac"]["agentNamespaceRules"][0]["resources"] == ["wls"]
    assert errors(tmp_path, NOOP, queue, "--plural", "Workload") == [
        "--plural: expected KIND=PLURAL with a lower-case plural, e.g. --plural Workload=workloads"]


def test_nothing_cluster_wide_and_no_secret_listing(tmp_path: Path) -> None:
    data = values(tmp_path, (EXAMPLES / "launch-config-azure-kaniko.yaml").read_text(),
                  {"p.yaml": (EXAMPLES / "queue-pytorchjob.yaml").read_text()},
                  "--identity", AZURE_ID, "--azure-storage-key-env", "AZ", "--inline-secrets",
                  "--agent-image", "wandb/launch-agent:0.22.1", environ={"AZ": "k"})
    per_ns = [r for node in data["rbac"]["namespaces"].values() for r in node["rules"]]
    assert per_ns, "the PyTorchJob queue's namespace gets its rule"
    for rule in data["rbac"]["extraRules"] + data["rbac"]["agentNamespaceRules"] + per_ns:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"] and rule["resourceNames"] == ["azure-storage-access-key"]


@pytest.mark.parametrize(("example", "flags", "expected"), [
    ("launch-config-aws-kaniko.yaml", ["--identity", AWS_ROLE],
     [{"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]}]),
    ("launch-config-azure-kaniko.yaml", ["--identity", AZURE_ID, "--azure-storage-key-env", "AZ", "--inline-secrets"],
     [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "delete"]},
      {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]}]),
    ("launch-config-noop.yaml", [], []),
])
def test_kaniko_rules_in_the_agent_namespace(tmp_path: Path, example: str, flags: list[str],
                                             expected: list[dict[str, Any]]) -> None:
    data = values(tmp_path, (EXAMPLES / example).read_text(), None, *flags, environ={"AZ": "k"})
    assert data["rbac"]["agentNamespaceRules"] == expected
    assert data["rbac"]["extraRules"] == []


# --------------------------------------------------------------------------------- identity

CLOUD = "queues: [q]\nenvironment: {{type: {cloud}, region: {region}}}\nbuilder: {{type: noop}}\n"


@pytest.mark.parametrize(("cloud", "value", "annotation"), [
    ("aws", AWS_ROLE, "eks.amazonaws.com/role-arn"),
    ("gcp", GCP_SA, "iam.gke.io/gcp-service-account"),
    ("azure", AZURE_ID, "azure.workload.identity/client-id"),
])
def test_workload_identity(tmp_path: Path, cloud: str, value: str, annotation: str) -> None:
    data = values(tmp_path, CLOUD.format(cloud=cloud, region="r1"), None, "--identity", value)
    assert data["serviceAccount"]["annotations"] == {annotation: value}
    labels = data.get("agent", {}).get("labels", {})
    assert labels == ({"azure.workload.identity/use": "true"} if cloud == "azure" else {})


@pytest.mark.parametrize(("cloud", "flag"), [("aws", "IAM role ARN"), ("gcp", "Google service account email"),
                                             ("azure", "client id (a GUID)")])
def test_missing_identity_names_the_flag(tmp_path: Path, cloud: str, flag: str) -> None:
    lines = errors(tmp_path, CLOUD.format(cloud=cloud, region="r1"))
    assert len(lines) == 1
    assert f"launch-config.yaml:2:21: environment.type: environment.type is {cloud}: pass --identity with" in lines[0]
    assert flag in lines[0] and "--no-identity" in lines[0]


def test_malformed_identity_and_opt_out(tmp_path: Path) -> None:
    config = CLOUD.format(cloud="aws", region="us-east-1")
    lines = errors(tmp_path, config, None, "--identity", "my-role")
    assert len(lines) == 1 and "--identity 'my-role' is not an IAM role ARN" in lines[0]
    assert errors(tmp_path, config, None, "--identity", GCP_SA)[0].count("is not an IAM role ARN") == 1
    data = values(tmp_path, config, None, "--no-identity")
    assert data["serviceAccount"]["annotations"] == {}
    assert errors(tmp_path, NOOP, None, "--identity", AWS_ROLE)[0].endswith(
        "--identity needs environment.type (aws, gcp or azure) in the agent config")


# ---------------------------------------------------------------------------------- secrets


def test_api_key_from_a_secret_by_default(tmp_path: Path) -> None:
    assert values(tmp_path)["agent"] == {"existingApiKeySecret": "wandb-api-key"}
    assert values(tmp_path, NOOP, None, "--api-key-secret", "team-key")["agent"] == {"existingApiKeySecret": "team-key"}


def test_api_key_from_env_only_with_inline_secrets(tmp_path: Path) -> None:
    env = {"MY_KEY": "k" * 40}
    lines = errors(tmp_path, NOOP, None, "--api-key-env", "MY_KEY", environ=env)
    assert lines == ["--api-key-env: this writes the secret from MY_KEY in clear into values.yaml; add "
                     "--inline-secrets to allow that, or name an existing Secret instead"]
    assert "k" * 40 not in "\n".join(lines)
    data = values(tmp_path, NOOP, None, "--api-key-env", "MY_KEY", "--inline-secrets", environ=env)
    assert data["agent"] == {"apiKey": "k" * 40}
    assert errors(tmp_path, NOOP, None, "--api-key-env", "UNSET", "--inline-secrets") == [
        "--api-key-env: the environment variable UNSET is not set or empty"]


def test_git_and_registry_secrets_only_when_asked(tmp_path: Path) -> None:
    plain = values(tmp_path)
    for key in ("gitCreds", "existingGitCredsSecret", "kanikoDockerConfigSecret", "azureStorageAccessKey",
                "kanikoPvcName"):
        assert key not in plain
    data = values(tmp_path, NOOP, None, "--git-creds-secret", "git", "--kaniko-docker-config-secret", "regcfg")
    assert data["existingGitCredsSecret"] == "git" and data["kanikoDockerConfigSecret"] == "regcfg"
    data = values(tmp_path, NOOP, None, "--git-creds-env", "GC", "--inline-secrets",
                  environ={"GC": "https://u:t@example.com"})
    assert data["gitCreds"] == "https://u:t@example.com"


def test_azure_blob_contexts_reference_the_storage_key_secret(tmp_path: Path) -> None:
    config = (EXAMPLES / "launch-config-azure-kaniko.yaml").read_text()
    res = run(["values", "-c", write(tmp_path, "launch-config.yaml", config), "--identity", AZURE_ID,
               "--namespace", "wandb"])
    assert res.code == 0, res.err
    assert yaml.safe_load(res.out)["existingAzureStorageSecret"] == "azure-storage-access-key"
    assert "note: kaniko reads the Azure storage account key from the Secret azure-storage-access-key (key " \
           "`password`) in wandb; create it: kubectl create secret generic azure-storage-access-key " \
           "--from-literal=password=<storage account key> -n wandb" in res.lines
    data = values(tmp_path, config, None, "--identity", AZURE_ID, "--azure-storage-key-env", "AZ",
                  "--inline-secrets", environ={"AZ": "s3cr3t"})
    assert data["azureStorageAccessKey"] == "s3cr3t" and "existingAzureStorageSecret" not in data


# ------------------------------------------------------------------------------ consistency

KANIKO = "queues: [q]\nenvironment: {{type: {cloud}, region: {region}}}\nbuilder:\n  type: kaniko\n{extra}"


@pytest.mark.parametrize(("config", "expected"), [
    (KANIKO.format(cloud="aws", region="us-east-1", extra="  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r\n"),
     "4:3: builder: a kaniko builder needs builder.build-context-store"),
    (KANIKO.format(cloud="aws", region="us-east-1", extra="  build-context-store: s3://b/p\n"),
     "4:3: builder: a kaniko builder needs builder.destination"),
    (KANIKO.format(cloud="gcp", region="us-central1",
                   extra="  build-context-store: s3://b\n  destination: us-docker.pkg.dev/p/r/i\n"),
     "5:24: builder.build-context-store: 's3://b' is an S3 store, which needs environment.type aws, not gcp"),
    ("queues: [q]\nregistry: {type: ecr, uri: us-docker.pkg.dev/p/r/i}\n",
     "2:28: registry.uri: 'us-docker.pkg.dev/p/r/i' is not an ECR URI (<account>.dkr.ecr.<region>.amazonaws.com/"
     "<repository>), which registry.type ecr needs"),
    ("queues: [q]\nmax_jobs: -2\n", "2:11: max_jobs: -2 is not allowed"),
    ("queues: [q]\nmax_jobs: '4.0'\n", "2:11: max_jobs: '4.0' is not allowed"),
    ("queues: [q]\nverbosity: '1'\n", "2:12: verbosity: expected integer or boolean, got a string '1'"),
    ("queues: ['<queue-name>']\n", "1:10: queues[0]: '<queue-name>' is a placeholder"),
    ("queues: [q]\nenvironment: {region: us-east-1}\n", "2:14: environment: environment needs a type"),
    ("queues: [q]\nbuilder: {destination: ghcr.io/a/b}\n", "2:10: builder: builder needs a type"),
    ("queues: [q]\nenvironment: {type: gcp, region: null}\n", "2:34: environment.region: environment.type gcp needs a region"),
    (KANIKO.format(cloud="aws", region="us-east-1",
                   extra="  build-context-store: s3://b\n  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r\n"
                         "  secret-name: creds\n"),
     "4:3: builder: secret-name and secret-key must be given together"),
])
def test_consistency_checks(tmp_path: Path, config: str, expected: str) -> None:
    lines = errors(tmp_path, config, None, "--no-identity")
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path / 'launch-config.yaml'}:{expected}"), lines[0]


@pytest.mark.parametrize(("config", "expected"), [
    (KANIKO.format(cloud="aws", region="us-east-1",
                   extra="  build-context-store: s3://b\n  destination: 1.dkr.ecr.eu-west-1.amazonaws.com/r\n"),
     "6:16: warning: builder.destination: registry region eu-west-1 differs from environment.region us-east-1"),
    (KANIKO.format(cloud="gcp", region="us-central1",
                   extra="  build-context-store: gs://b\n  destination: europe-west4-docker.pkg.dev/p/r/i\n"),
     "6:16: warning: builder.destination: registry region europe-west4 differs from environment.region us-central1"),
    (KANIKO.format(cloud="gcp", region="us-central1",
                   extra="  build-context-store: gs://b\n  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r\n"),
     "6:16: warning: builder.destination: ECR registries are reached with aws credentials, but environment.type is gcp"),
    ("queues: [q]\nbuilder: {type: docker}\n", "2:17: warning: builder.type: the docker builder needs a docker daemon"),
    ("queues: [q]\nbuilder:\n  type: noop\n  tpye: kaniko\n", "4:3: warning: builder.tpye: unknown key; the agent ignores it; did you mean type?"),
    ("queues: [q]\nenvironment: {type: aws, region: r, profile: x}\n", "2:37: warning: environment.profile: unknown key"),
    ("queues: [q]\nmax_jobs: '4'\nmax_schedulers: 0\n", "3:17: warning: max_schedulers: 0 means 0: the agent runs no sweep"),
    ("queues: [q]\nenvironment: {type: gcp, region: us-central1, project: my-project}\n",
     "2:47: warning: environment.project: unknown key; the agent ignores it"),
])
def test_warnings_where_the_config_works_but_maybe_not_as_meant(tmp_path: Path, config: str, expected: str) -> None:
    lines = warnings(tmp_path, config, "--no-identity", "--kaniko-pvc", "ctx")
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path / 'launch-config.yaml'}:{expected}"), lines[0]


def test_multi_region_artifact_registry_fits_any_region(tmp_path: Path) -> None:
    config = KANIKO.format(cloud="gcp", region="us-central1",
                           extra="  build-context-store: gs://b\n  destination: us-docker.pkg.dev/p/r/i\n")
    assert values(tmp_path, config, None, "--identity", GCP_SA)["launchConfig"] == config


def test_kaniko_pvc_replaces_the_context_store(tmp_path: Path) -> None:
    config = "queues: [q]\nbuilder: {type: kaniko, destination: registry.example.com/team/img}\n"
    data = values(tmp_path, config, None, "--kaniko-pvc", "contexts", "--kaniko-docker-config-secret", "push")
    assert data["kanikoPvcName"] == "contexts"


def test_bad_flags(tmp_path: Path) -> None:
    lines = errors(tmp_path, NOOP, None, "--namespace", "Bad_NS", "--base-url", "ftp://x", "--release", "A")
    assert lines == [
        "--namespace: 'Bad_NS' is not a namespace name (lower-case letters, digits, '-', at most 63 characters)",
        "--release: 'A' is not a release name (lower-case DNS label, at most 53 characters)",
        "--base-url: 'ftp://x' is not an http(s) URL",
    ]


# ------------------------------------------------------------------ what the agent would refuse

RUN_AS_ROOT = "spec:\n  template:\n    spec:\n      containers:\n        - image: x\n          securityContext: {runAsUser: 0}\n"


def test_queue_configs_the_agent_refuses_are_bad_input(tmp_path: Path) -> None:
    host = "spec:\n  template:\n    spec:\n      hostPID: true\n      containers: [{image: x}]\n"
    lines = errors(tmp_path, NOOP, {"host.yaml": host})
    assert lines == [f"{tmp_path / 'host.yaml'}: the agent would refuse every run on this queue: "
                     "pod-security-baseline: Job: hostPID is not allowed (host namespaces)"]
    assert values(tmp_path, NOOP, {"root.yaml": RUN_AS_ROOT})["agent"] == {"existingApiKeySecret": "wandb-api-key"}
    lines = errors(tmp_path, NOOP, {"root.yaml": RUN_AS_ROOT}, "--security-level", "restricted")
    assert len(lines) == 1 and "pod-security-restricted" in lines[0]
    data = values(tmp_path, NOOP, {"host.yaml": host}, "--security-level", "privileged")
    assert data["agent"]["securityLevel"] == "privileged"


def test_kaniko_to_another_registry_warns_about_push_credentials(tmp_path: Path) -> None:
    config = "queues: [q]\nbuilder: {type: kaniko, destination: ghcr.io/team/img, secret-name: s, secret-key: k}\n"
    where = f"{tmp_path / 'launch-config.yaml'}:2:38: warning: builder.destination"
    assert warnings(tmp_path, config, "--kaniko-pvc", "ctx") == [
        f"{where}: ghcr.io/team/img is not an ECR, Artifact Registry or ACR repository; the agent cannot check it, "
        "and pushing there needs credentials you provide",
        f"{where}: kaniko pushes to ghcr.io/team/img with no credentials unless you pass "
        "--kaniko-docker-config-secret NAME (a Secret with a docker config.json that can push there)"]
    assert warnings(tmp_path, config, "--kaniko-pvc", "ctx", "--kaniko-docker-config-secret", "push") == [
        f"{where}: ghcr.io/team/img is not an ECR, Artifact Registry or ACR repository; the agent cannot check it, "
        "and pushing there needs credentials you provide"]


def test_custom_resource_without_pod_template_is_refused(tmp_path: Path) -> None:
    lines = errors(tmp_path, NOOP, {"cr.yaml": "apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nspec: {}\n"})
    assert lines == [f"{tmp_path / 'cr.yaml'}: the agent would refuse every run on this queue: containers: "
                     "PyTorchJob has no pod template with containers"]
