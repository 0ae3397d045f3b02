"""The build Job manifest and the builder settings from an agent config (pure)."""

from __future__ import annotations

import pytest

from agent.build import job, settings, status
from agent.build.settings import BuildConfigError, kaniko_settings
from agent.manifest import LABEL_ROLE, ManifestSettings

MANIFEST = ManifestSettings(agent_namespace="wandb", agent_identity="rel")


def _settings(**kw: object) -> job.KanikoSettings:
    base: dict[str, object] = {"destination": "123456789012.dkr.ecr.us-east-1.amazonaws.com/runs",
                               "registry_kind": "ecr", "registry_region": "us-east-1",
                               "context_store": "s3://b/ctx", "environment": "aws", "region": "us-east-1"}
    base.update(kw)
    return job.KanikoSettings(**base)  # type: ignore[arg-type]


def _container(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def test_job_defaults_and_args() -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/runs:abcd1234"
    m = job.build_job(_settings(service_account="launch-sa"), MANIFEST, image_uri=image,
                      context_url="s3://b/ctx/x.tgz", context_digest="d1")
    c = _container(m)
    assert c["args"] == ["--context=s3://b/ctx/x.tgz", "--dockerfile=Dockerfile.wandb", f"--destination={image}",
                         "--cache=true", "--cache-repo=123456789012.dkr.ecr.us-east-1.amazonaws.com/runs",
                         "--snapshot-mode=redo", "--compressed-caching=false"]
    assert c["image"] == job.DEFAULT_KANIKO_IMAGE and c["name"] == "wandb-container-build"
    assert {"name": "AWS_REGION", "value": "us-east-1"} in c["env"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    pod = m["spec"]["template"]["spec"]
    assert (pod["restartPolicy"], pod["activeDeadlineSeconds"], pod["serviceAccountName"]) == \
        ("Never", 1800, "launch-sa")
    assert pod["automountServiceAccountToken"] is False
    assert m["spec"]["backoffLimit"] == 0
    meta = m["metadata"]
    assert meta["namespace"] == "wandb" and meta["labels"][LABEL_ROLE] == "build"
    assert meta["labels"]["wandb.ai/agent"] == "rel" and meta["annotations"][job.ANN_IMAGE] == image
    assert meta["name"] == job.build_name(_settings(), image) and len(meta["name"]) <= 63


def test_one_name_per_image() -> None:
    s = _settings(build_job_name="x" * 80)
    a, b = job.build_name(s, "r/i:aaaa1111"), job.build_name(s, "r/i:bbbb2222")
    assert a != b and a == job.build_name(s, "r/i:aaaa1111") and len(a) <= 63


def test_kaniko_config_is_merged_and_args_override() -> None:
    config = {"metadata": {"labels": {"team": "ml"}},
              "spec": {"template": {"metadata": {"annotations": {"a": "b"}}, "spec": {
                  "activeDeadlineSeconds": 99, "containers": [{
                      "args": ["--cache=false", "--registry-mirror=mirror.local"],
                      "resources": {"limits": {"memory": "2Gi"}}, "env": [{"name": "S3_ENDPOINT", "value": "x"}]}]}}}}
    m = job.build_job(_settings(kaniko_config=config), MANIFEST, image_uri="r/i:t", context_url="s3://b/x.tgz")
    c = _container(m)
    assert "--cache=false" in c["args"] and "--cache=true" not in c["args"]
    assert "--registry-mirror=mirror.local" in c["args"]
    assert c["resources"] == {"limits": {"memory": "2Gi"}}
    assert {"name": "S3_ENDPOINT", "value": "x"} in c["env"]
    assert m["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 99
    assert m["metadata"]["labels"]["team"] == "ml"
    assert config["spec"]["template"]["spec"]["containers"][0]["args"] == ["--cache=false",
                                                                         "--registry-mirror=mirror.local"]


def test_kaniko_config_errors() -> None:
    two = {"spec": {"template": {"spec": {"containers": [{}, {}]}}}}
    with pytest.raises(job.BuildError, match="one container"):
        job.build_job(_settings(kaniko_config=two), MANIFEST, image_uri="r/i:t", context_url="s3://b/x.tgz")
    bad = {"spec": {"template": {"spec": {"containers": [{"args": ["--verbosity", "debug"]}]}}}}
    with pytest.raises(job.BuildError, match="--name=value"):
        job.build_job(_settings(kaniko_config=bad), MANIFEST, image_uri="r/i:t", context_url="s3://b/x.tgz")


def test_credentials_mounts() -> None:
    pvc = job.build_job(_settings(pvc_name="ctx-pvc"), MANIFEST, image_uri="r/i:t", context_url="tar:///context/x.tgz")
    assert {"name": "kaniko-pvc", "persistentVolumeClaim": {"claimName": "ctx-pvc"}} in \
        pvc["spec"]["template"]["spec"]["volumes"]
    assert {"name": "kaniko-pvc", "mountPath": "/context"} in _container(pvc)["volumeMounts"]
    cfg = job.build_job(_settings(docker_config_secret="regcred"), MANIFEST, image_uri="r/i:t", context_url="s3://x")
    assert {"name": "kaniko-docker-config", "mountPath": "/kaniko/.docker", "readOnly": True} in \
        _container(cfg)["volumeMounts"]
    ecr = job.build_job(_settings(secret_name="aws-creds", secret_key="credentials"), MANIFEST, image_uri="r/i:t",
                        context_url="s3://x")
    assert {"name": "registry-credentials", "mountPath": "/root/.aws", "readOnly": True} in \
        _container(ecr)["volumeMounts"]
    gar = job.build_job(_settings(destination="us-docker.pkg.dev/p/r/i", registry_kind="gcr", environment="gcp",
                                  secret_name="gsa", secret_key="key.json"), MANIFEST, image_uri="r/i:t",
                        context_url="gs://x")
    assert {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/kaniko/.config/gcloud/config.json"} in \
        _container(gar)["env"]
    with pytest.raises(job.BuildError, match="ECR and Artifact Registry"):
        job.build_job(_settings(registry_kind=None, secret_name="s", secret_key="k"), MANIFEST, image_uri="r/i:t",
                      context_url="s3://x")


def test_azure_key_and_workload_identity() -> None:
    acr = _settings(destination="myreg.azurecr.io/runs", registry_kind="acr", environment="azure",
                    context_store="https://acct.blob.core.windows.net/c", azure_key_secret="azure-storage-access-key")
    m = job.build_job(acr, MANIFEST, image_uri="myreg.azurecr.io/runs:t",
                      context_url="https://acct.blob.core.windows.net/c/x.tgz")
    assert m["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert {"name": "AZURE_STORAGE_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
        "name": "azure-storage-access-key", "key": "password"}}} in _container(m)["env"]
    keyless = job.build_job(acr, MANIFEST, image_uri="myreg.azurecr.io/runs:t", context_url="tar:///w/x.tgz")
    assert not any(e["name"] == "AZURE_STORAGE_ACCESS_KEY" for e in _container(keyless)["env"])


CONFIGS = {
    "no store": ({"builder": {"type": "kaniko", "destination": "r.example/x"}}, "needs a build context store"),
    "scheme": ({"environment": {"type": "gcp", "region": "us"},
                "builder": {"type": "kaniko", "build-context-store": "s3://b", "destination": "r.example/x"}},
               "needs environment.type aws, not gcp"),
    "no env": ({"builder": {"type": "kaniko", "build-context-store": "s3://b", "destination": "r.example/x"}},
               "needs environment.type aws, not none"),
    "bad store": ({"environment": {"type": "aws", "region": "us-east-1"},
                   "builder": {"type": "kaniko", "build-context-store": "ftp://b", "destination": "r.example/x"}},
                  "is not an s3://"),
    "no destination": ({"environment": {"type": "aws", "region": "us-east-1"},
                        "builder": {"type": "kaniko", "build-context-store": "s3://b"}}, "needs the image repository"),
    "registry type": ({"environment": {"type": "aws", "region": "us-east-1"}, "registry": {"type": "ecr",
                       "uri": "myreg.azurecr.io/x"}, "builder": {"type": "kaniko", "build-context-store": "s3://b"}},
                      "is not a ecr URI"),
    "registry cloud": ({"environment": {"type": "aws", "region": "us-east-1"},
                        "builder": {"type": "kaniko", "build-context-store": "s3://b",
                                    "destination": "us-docker.pkg.dev/p/r/i"}}, "needs environment.type gcp"),
    "tag": ({"environment": {"type": "aws", "region": "us-east-1"},
             "builder": {"type": "kaniko", "build-context-store": "s3://b", "destination": "r.example/x:v1"}},
            "has a tag"),
    "secret pair": ({"environment": {"type": "aws", "region": "us-east-1"},
                     "builder": {"type": "kaniko", "build-context-store": "s3://b", "destination": "r.example/x",
                                 "secret-name": "s"}}, "go together"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_configs_that_cannot_build_are_one_line(case: str) -> None:
    config, message = CONFIGS[case]
    with pytest.raises(BuildConfigError) as err:
        kaniko_settings(config, {}, where="cfg.yaml")
    assert message in str(err.value) and str(err.value).startswith("cfg.yaml: key ")
    assert "\n" not in str(err.value)


def test_settings_from_config_and_env() -> None:
    config = {"environment": {"type": "aws", "region": "us-east-1"},
              "builder": {"type": "kaniko", "destination": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/r"}}
    env = {"WANDB_LAUNCH_KANIKO_PVC_NAME": "pvc", "WANDB_LAUNCH_KANIKO_PVC_MOUNT_PATH": "/home/x/kaniko/",
           "WANDB_LAUNCH_KANIKO_AUTH_SECRET": "regcred", "WANDB_LAUNCH_SERVICE_ACCOUNT_NAME": "sa"}
    s = kaniko_settings(config, env)
    assert s is not None
    assert (s.destination, s.registry_kind, s.registry_region) == \
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/r", "ecr", "eu-west-1")
    assert (s.pvc_name, s.pvc_mount_path, s.docker_config_secret, s.service_account) == \
        ("pvc", "/home/x/kaniko", "regcred", "sa")
    assert kaniko_settings({"builder": {"type": "noop"}}, {}) is None
    assert settings.kaniko_settings({}, {}) is None


def test_job_state_and_messages() -> None:
    assert status.job_state({"status": {}}).state == status.BUILDING
    assert status.job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}).state == status.BUILT
    failed = status.job_state({"status": {"conditions": [{"type": "Failed", "status": "True",
                                                          "reason": "BackoffLimitExceeded"}]}})
    assert failed == status.BuildState(status.FAILED, "BackoffLimitExceeded")
    log = "\n".join(f"line {i}" for i in range(40)) + "\n\x1b[31merror building image: exit status 3\x1b[0m\n"
    msg = status.failure_message("r/i:t", "b-1", "wandb", "BackoffLimitExceeded", log)
    assert msg.splitlines()[0] == "building r/i:t failed (BackoffLimitExceeded; Job wandb/b-1):"
    assert msg.splitlines()[-1] == "error building image: exit status 3"
    assert len(msg.splitlines()) == status.LOG_LINES + 1


def test_the_agent_refuses_at_start_up_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    path = tmp_path / "launch-config.yaml"
    path.write_text("entity: e\nqueues: [q]\nenvironment: {type: gcp, region: us-central1}\n"
                    "builder: {type: kaniko, build-context-store: 's3://bucket/ctx', destination: r.example/x}\n")
    proc = subprocess.run([sys.executable, "-m", "agent", "-c", str(path), "--check-config"], capture_output=True,
                          text=True, env={"WANDB_API_KEY": "k" * 40, "HOME": str(tmp_path)}, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "builder.build-context-store" in lines[0] and "needs environment.type aws" in lines[0]
    path.write_text("entity: e\nqueues: [q]\nbuilder: {type: kaniko, destination: r.example/x}\n")
    ok = subprocess.run([sys.executable, "-m", "agent", "-c", str(path), "--check-config"], capture_output=True,
                        text=True, env={"WANDB_API_KEY": "k" * 40, "HOME": str(tmp_path),
                                        "WANDB_LAUNCH_KANIKO_PVC_NAME": "ctx"}, timeout=60)
    assert ok.returncode == 0, ok.stderr
