"""Property: whatever a queue config holds, build_workload either refuses it with ManifestError or
returns objects whose names and labels Kubernetes accepts and that never carry the key in clear."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.manifest import ManifestError, ManifestSettings, build_workload, pod_templates

DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=12),
                    st.sampled_from(["${run_id}", "${image_uri}", "${WANDB_API_KEY}", "true", "Unconfined"]))
keys = st.sampled_from(["spec", "template", "containers", "metadata", "labels", "name", "namespace", "image",
                        "env", "securityContext", "hostNetwork", "volumes", "hostPath", "apiVersion", "kind",
                        "args", "command", "privileged", "capabilities", "add", "x"])
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=20)
configs = st.one_of(
    st.dictionaries(keys, values, max_size=5),
    st.builds(lambda c, n, extra: {"metadata": {"name": n, "labels": {"team": n}},
                                   "spec": {"template": {"spec": {"containers": [c]}}}, **extra},
              st.dictionaries(keys, values, max_size=4), st.text(max_size=90),
              st.dictionaries(keys, values, max_size=2)),
)
ids = st.text(min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(config=configs, run_id=ids, project=st.text(min_size=1, max_size=80), item=ids)
@example(config={"spec": {"template": {"metadata": None}}}, run_id="r", project="p", item="i")
@example(config={"spec": {"template": {"metadata": "x"}}}, run_id="r", project="p", item="i")
@example(config={"spec": {"template": {"spec": {"containers": [{"env": [{"name": ["x"]}]}]}}}},
         run_id="r", project="p", item="i")
def test_refused_or_valid(config, run_id, project, item):
    spec = {"entity": "e", "project": project, "run_id": run_id, "docker": {"docker_image": "img:1"},
            "resource_args": {"kubernetes": config}}
    s = ManifestSettings(agent_namespace="wandb", target_namespaces=("ml",), api_key_secret="k")
    try:
        objs = build_workload(spec, item_id=item, queue="q", settings=s)
    except ManifestError as exc:
        assert exc.rule and exc.message
        return
    for obj in objs:
        meta = obj["metadata"]
        assert DNS.match(meta["name"]) and len(meta["name"]) <= 63, meta["name"]
        for value in meta["labels"].values():
            assert LABEL.match(value) and len(value) <= 63, value
        for tmpl in pod_templates(obj):
            for c in tmpl["spec"]["containers"]:
                key = [e for e in c["env"] if e.get("name") == "WANDB_API_KEY"]
                assert len(key) == 1 and "value" not in key[0]


spec_keys = st.sampled_from(["entity", "project", "run_id", "name", "author", "docker", "image_uri", "overrides",
                             "resource_args", "additional_services", "sweep_id", "_resume_count", "job", "uri"])


@settings(max_examples=300, deadline=None)
@given(extra=st.dictionaries(spec_keys, values, max_size=6))
def test_any_run_spec_is_refused_or_built(extra):
    spec = {"entity": "e", "project": "p", "run_id": "r", "docker": {"docker_image": "img:1"}, **extra}
    s = ManifestSettings(agent_namespace="wandb", api_key_secret="k")
    try:
        objs = build_workload(spec, item_id="i", queue="q", settings=s)
    except ManifestError as exc:
        assert exc.rule
        return
    assert objs and objs[-1]["metadata"]["namespace"] == "wandb"
