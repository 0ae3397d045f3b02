"""Creation refused by the API server: no RBAC in the namespace (403), an invalid object (422), a
ResourceQuota used up (403), a target namespace that does not exist (404). Each item fails with the
reason in plain words, and the next item is served."""

from __future__ import annotations

from harness import FAILED, FINISHED, RUN_SECONDS, check_runs, run_spec, wait_for


def test_refused_creations_fail_their_item_in_plain_words(site, tally):
    env = site.env
    no_rbac = env.namespace("norbac")
    quota = env.namespace("quota")
    env.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-jobs", "namespace": quota},
               "spec": {"hard": {"count/jobs.batch": "0"}}})
    missing = f"gone-{site.release}"
    targets = f"{site.agent_ns},{site.jobs_ns},{no_rbac},{quota},{missing}"
    # The agent may write into `quota` (RBAC) but its ResourceQuota admits no Job.
    env.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "agent", "namespace": quota},
         "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "patch",
                                                                            "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "agent", "namespace": quota},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "agent"},
         "subjects": [{"kind": "ServiceAccount", "name": f"launch-agent-{site.release}",
                       "namespace": site.agent_ns}]}])

    def queue(name: str, **config) -> str:
        queue_name = f"{name}-{site.release}"
        site.emu.queue(queue_name, config)
        return queue_name

    cases = {
        "403": (queue("rbac", metadata={"namespace": no_rbac}), ["403", "not allowed", no_rbac]),
        "422": (queue("invalid", metadata={"namespace": site.jobs_ns}, spec={"backoffLimit": -1}),
                ["422", "invalid", "backoffLimit"]),
        "quota": (queue("quota", metadata={"namespace": quota}), ["403", "ResourceQuota", quota]),
        # Without a Role there (the namespace is gone, so is its Role) the API server answers 403 first.
        "missing": (queue("missing", metadata={"namespace": missing}), ["403", f"namespace {missing} exists"]),
    }
    ok_q = site.queue("ok", annotations={RUN_SECONDS: "1"})
    expected = {}
    for name, (q, _) in cases.items():
        spec = run_spec(f"{name}-{site.release}")
        expected[site.emu.enqueue(q, spec)] = (FAILED, spec)
        tally.fault(f"creation refused: {name}")
    after = run_spec(f"after-{site.release}")
    after_item = site.emu.enqueue(ok_q, after)
    agent = site.agent([*(q for q, _ in cases.values()), ok_q], env={"LAUNCH_AGENT_TARGET_NAMESPACES": targets},
                       max_jobs=1)
    wait_for("every refused item failed", lambda: all(site.emu.item(i)["state"] == "FAILED" for i in expected),
             agents=[agent])
    for item_id, (name, (_, words)) in zip(expected, cases.items(), strict=True):
        message = site.emu.item(item_id)["error"]["message"]
        assert site.emu.item(item_id)["error"]["stage"] == "agent"
        for word in words:
            assert word in message, f"{name}: {word!r} not in {message!r}"
        assert "Traceback" not in message
    wait_for("the next item served", lambda: site.emu.item(after_item)["state"] == "LEASED", agents=[agent])
    for _, spec in expected.values():
        made = [k for k in env.creations() if k[2].startswith(f"proj-{spec['run_id']}")]
        assert not made, f"nothing is created for a refused item: {made}"
    expected[after_item] = (FINISHED, after)
    check_runs(site, tally, expected)
