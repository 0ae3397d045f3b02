"""Bad input never crashes: property tests (hypothesis) over the manifest builder — queue configs,
run specs, pod templates inside additional_services, label keys, `${...}`, unicode, huge values —
and over the agent's config loader; a bounded fuzz run of the queue-config parser (byte edits of
the example queue configs through `python -m generator validate/queue` and the agent's builder).

Every outcome is either a refusal (ManifestError / ConfigError / exit code 2 with one line per
problem) or objects the API server would take: names valid for their kind, valid label keys and
values, the API key only as a secretKeyRef, every pod template within the security level, every
Secret it references allowlisted.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_helpers import ROOT, write_figures

from agent.config import ConfigError, resolve
from agent.manifest import (
    ManifestError,
    ManifestSettings,
    build_workload,
    pod_templates,
    pss_violations,
    secret_refs,
)
from agent.manifest.labels import valid_key
from generator.cli import main as generator_main

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
KEY = "0123456789abcdef0123456789abcdef01234567"
COUNTS = {"manifest": 0, "config": 0, "fuzz": 0, "crashes": 0}

tricky = st.sampled_from([
    "${run_id}", "${image_uri}", "${WANDB_API_KEY}", "${HOME}", "${", "}", "$${run_id}", "{{x}}", "\u202e",
    "名前", "emoji-😀", "a" * 300, "", " ", "true", "null", "0", "-1", "Unconfined", "ALL", "NET_RAW", "../..",
    "'; DROP", "\"quoted\"", "line\nbreak", "key: value", "- item", "{\"a\": 1}", "*", "&anchor", "!!python/object",
])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                    st.text(max_size=40), tricky)
label_keys = st.one_of(tricky, st.text(max_size=30), st.sampled_from([
    "app", "example.com/team", "a/b/c", "-bad", "x" * 64, "wandb.ai/run-id", "UPPER/ok", "ok.", "kubernetes.io/x"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(tricky, st.text(max_size=8)), inner, max_size=3)),
    max_leaves=15)


@st.composite
def containers(draw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": draw(st.one_of(st.just("main"), tricky)), "image": draw(st.one_of(
        st.just("registry.local/run:1"), st.just("${image_uri}"), tricky, scalars))}
    for key in draw(st.lists(st.sampled_from(["env", "envFrom", "securityContext", "ports", "command", "args",
                                              "volumeMounts", "resources"]), max_size=3, unique=True)):
        c[key] = draw(st.one_of(json_values, st.sampled_from([
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "git-creds", "key": "k"}}}],
            [{"secretRef": {"name": "ssh"}}], {"privileged": True}, {"capabilities": {"drop": ["NET_RAW"]}},
            {"capabilities": {"add": ["SYS_ADMIN"]}}, [{"containerPort": 80, "hostPort": 80}], ["sh", "-c", "x"],
            {"runAsUser": 0}, {"seccompProfile": {"type": "Unconfined"}}])))
    return c


@st.composite
def pod_templates_(draw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": draw(st.lists(containers(), max_size=2))}
    for key in draw(st.lists(st.sampled_from(["volumes", "hostNetwork", "securityContext", "initContainers",
                                              "serviceAccountName", "imagePullSecrets", "os", "hostUsers"]),
                             max_size=3, unique=True)):
        spec[key] = draw(st.one_of(json_values, st.sampled_from([
            [{"name": "v", "secret": {"secretName": "git-creds"}}], [{"name": "h", "hostPath": {"path": "/"}}],
            True, {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}, [{"name": "regcred"}],
            {"name": "windows"}, False])))
    tmpl: dict[str, Any] = {"spec": spec}
    meta = draw(st.one_of(st.none(), st.builds(
        lambda labels, ann: {"labels": labels, "annotations": ann},
        st.dictionaries(label_keys, st.one_of(st.text(max_size=70), tricky), max_size=3),
        st.dictionaries(label_keys, st.one_of(st.text(max_size=20), tricky, st.just("unconfined")), max_size=2))))
    if meta is not None or draw(st.booleans()):
        tmpl["metadata"] = meta
    return tmpl


@st.composite
def aux_services(draw: Any) -> list[Any]:
    out: list[Any] = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["Service", "Deployment", "Pod", "Secret", "RoleBinding", None]))
        version = {"Deployment": "apps/v1", "RoleBinding": "rbac.authorization.k8s.io/v1"}.get(kind, "v1")
        body: dict[str, Any] = {"apiVersion": version, "kind": kind}
        if draw(st.booleans()):
            body["metadata"] = draw(st.one_of(st.none(), st.fixed_dictionaries({"name": st.one_of(tricky, scalars)})))
        tmpl = draw(pod_templates_())
        body["spec"] = tmpl["spec"] if kind == "Pod" else {"template": tmpl, "ports": [{"port": 80}]}
        out.append(draw(st.one_of(st.just({"config": body}), json_values)))
    return out


@st.composite
def run_specs(draw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "run_id": draw(st.one_of(st.text(min_size=1, max_size=70), tricky)),
        "entity": draw(st.one_of(st.text(min_size=1, max_size=20), tricky)),
        "project": draw(st.one_of(st.text(min_size=1, max_size=70), tricky)),
        "docker": {"docker_image": draw(st.one_of(st.just("registry.local/run:1"), tricky))},
        "resource_args": {"kubernetes": draw(st.one_of(
            st.builds(lambda t, name, labels: {"metadata": {"name": name, "labels": labels}, "spec": {"template": t}},
                      pod_templates_(), st.one_of(tricky, st.text(max_size=70)),
                      st.dictionaries(label_keys, st.text(max_size=10), max_size=2)),
            st.builds(lambda t: {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {
                "name": "pt-${run_id}"}, "spec": {"pytorchReplicaSpecs": {"Worker": {"template": t}}}},
                pod_templates_()),
            json_values))},
        "additional_services": draw(aux_services()),
    }
    for key in draw(st.lists(st.sampled_from(["name", "author", "overrides", "sweep_id", "_resume_count", "job"]),
                             max_size=3, unique=True)):
        spec[key] = draw(st.one_of(json_values, st.just({"args": ["--lr", "${run_id}"], "run_config": {
            "x": "y" * 40000}}), st.just({"entry_point": ["python", "${WANDB_API_KEY}"]})))
    return spec


def _assert_admissible(objs: list[dict[str, Any]], s: ManifestSettings) -> None:
    text = json.dumps(objs)
    assert KEY not in text
    for obj in objs:
        meta = obj["metadata"]
        name_re = DNS1035 if obj["kind"] == "Service" else DNS1123
        assert name_re.match(meta["name"]) and len(meta["name"]) <= 63, meta["name"]
        for where in [meta, *[t.get("metadata") or {} for t in pod_templates(obj)]]:
            for k, v in (where.get("labels") or {}).items():
                assert valid_key(k) and isinstance(v, str) and LABEL_VALUE.match(v) and len(v) <= 63, (k, v)
            assert all(valid_key(k) and isinstance(v, str) for k, v in (where.get("annotations") or {}).items())
        for tmpl in pod_templates(obj):
            assert pss_violations(tmpl.get("metadata"), tmpl["spec"], s.security_level) == []
            assert {n for _, n in secret_refs(tmpl["spec"])} <= {s.api_key_secret, *s.allowed_secrets}
            for _, c in [(k, c) for k in ("initContainers", "containers") for c in tmpl["spec"].get(k) or []]:
                key_env = [e for e in c.get("env") or [] if e.get("name") == "WANDB_API_KEY"]
                assert all("value" not in e for e in key_env)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=run_specs(), level=st.sampled_from(["privileged", "baseline", "restricted"]),
       item=st.one_of(st.text(min_size=1, max_size=60), tricky))
def test_run_specs_are_refused_or_admissible(spec, level, item):
    s = ManifestSettings(agent_namespace="wandb", api_key_secret="wandb-api-key-r", security_level=level,
                         allowed_secrets=("regcred",))
    COUNTS["manifest"] += 1
    try:
        objs = build_workload(spec, item_id=item or "i", queue="q", settings=s)
    except ManifestError as exc:
        assert exc.rule and exc.message and "\n" not in exc.rule
        return
    except Exception:
        COUNTS["crashes"] += 1
        raise
    _assert_admissible(objs, s)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=200), st.builds(
    lambda q, extra: json.dumps({"queues": q, **extra}), json_values, st.dictionaries(st.sampled_from([
        "entity", "max_jobs", "builder", "registry", "environment", "secure_mode", "verbosity", "queue"]),
        json_values, max_size=3))),
    env=st.dictionaries(st.sampled_from(["WANDB_LAUNCH_MAX_JOBS", "LAUNCH_AGENT_SECURITY_LEVEL",
                                         "LAUNCH_AGENT_ALLOWED_SECRETS", "LAUNCH_AGENT_HEALTH_PORT",
                                         "WANDB_LAUNCH_START_TIMEOUT", "LAUNCH_AGENT_LOG_FORMAT"]),
                        st.one_of(tricky, st.text(max_size=10)), max_size=3))
def test_agent_config_is_loaded_or_one_clear_error(text, env):
    COUNTS["config"] += 1
    with tempfile.TemporaryDirectory(prefix="cfg-prop-") as tmp:
        path = Path(tmp) / "launch-config.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            s = resolve(config_path=str(path), queues=None, env={"WANDB_API_KEY": KEY, **env})
        except ConfigError as exc:
            assert "\n" not in str(exc) and KEY not in str(exc)
            return
        except Exception:
            COUNTS["crashes"] += 1
            raise
        assert s.queues and KEY not in repr(s)


SEEDS = [p.read_bytes() for p in sorted((ROOT / "examples").glob("queue-*.yaml"))]


@st.composite
def mutated(draw: Any) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        chunk = draw(st.one_of(st.binary(min_size=1, max_size=4), st.sampled_from([
            b"${WANDB_API_KEY}", b"\n  hostNetwork: true", b": [", b"\t", b"\xff", b"&a *a", b"{{x}}", b"\n- ",
            b"\x00", b"!!binary", b"\xef\xbb\xbf", b"---\n", "\u00e9".encode()])))
        if op == "insert":
            data[at:at] = chunk
        elif op == "delete":
            del data[at:at + len(chunk)]
        else:
            data[at:at + len(chunk)] = chunk
    return bytes(data)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated())
def test_fuzzed_queue_configs_never_crash(raw):
    COUNTS["fuzz"] += 1
    with tempfile.TemporaryDirectory(prefix="queue-fuzz-") as tmp:
        path = Path(tmp) / "queue.yaml"
        path.write_bytes(raw)
        for argv in (["validate", str(path)], ["queue", "-q", str(path), "--namespace", "ml"]):
            out, err = io.StringIO(), io.StringIO()
            try:
                code = generator_main(argv, environ={}, stdout=out, stderr=err)
            except Exception:
                COUNTS["crashes"] += 1
                raise
            assert code in (0, 2), (argv, err.getvalue())
            assert "Traceback" not in err.getvalue()
            if code == 2:
                assert err.getvalue().strip(), argv


def test_zz_record_figures():
    """Figures for `make reliability` (runs after the properties in this module)."""
    assert COUNTS["crashes"] == 0
    if COUNTS["manifest"]:
        write_figures("bad-input", {"manifest_examples": COUNTS["manifest"], "config_examples": COUNTS["config"],
                                    "fuzz_examples": COUNTS["fuzz"], "crashes": COUNTS["crashes"],
                                    "bad_inputs_tried": sum(v for k, v in COUNTS.items() if k != "crashes")})
