"""Names fit Kubernetes limits and follow the release; overrides work."""

from __future__ import annotations

from chart_checks import BASIC, agent_container, deployment, env_of

LONG = "a-very-long-release-name-that-goes-on-and-on-for-fifty-three"[:53]


def test_long_release_names_are_truncated(render) -> None:
    objs = render(files=(BASIC,), values={"replicas": 2, "sshAuthSecrets": [{"name": "k", "host": "h"}], "gitCreds": "x"},
                  release=LONG)
    # The ServiceAccount and the API-key Secret keep the official chart's names uncut (DNS subdomains,
    # up to 253 characters): workload identity and the official agent find them by those names.
    official_names = {f"wandb-launch-serviceaccount-{LONG}", f"wandb-api-key-{LONG}"}
    assert official_names <= {o["metadata"]["name"] for o in objs}
    for obj in objs:
        if obj["metadata"]["name"] in official_names:
            continue
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        assert not obj["metadata"]["name"].endswith("-")
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63
    names = [o["metadata"]["name"] for o in objs if o["kind"] in ("ConfigMap", "Secret")]
    assert len(names) == len(set(names)), names
    env = env_of(agent_container(objs))
    assert env["LAUNCH_AGENT_LEASE_NAME"]["value"].endswith("-leader")


def test_fullname_and_service_account_overrides(render) -> None:
    objs = render(files=(BASIC,), values={"fullnameOverride": "agent", "serviceAccount": {"name": "launcher"}})
    assert deployment(objs)["metadata"]["name"] == "agent"
    assert deployment(objs)["spec"]["template"]["spec"]["serviceAccountName"] == "launcher"
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"} == {"launcher"}


def test_label_precedence_without_duplicate_keys(render) -> None:
    values = {
        "commonLabels": {"team": "common", "cost": "1"},
        "agent": {"labels": {"team": "pod", "app.kubernetes.io/name": "hijack"}},
    }
    objs = render(files=(BASIC,), values=values)
    pod = deployment(objs)["spec"]["template"]["metadata"]["labels"]
    assert pod["team"] == "pod" and pod["cost"] == "1"
    assert pod["app.kubernetes.io/name"] == "launch-agent"  # the selector cannot be overridden
    assert deployment(objs)["metadata"]["labels"]["team"] == "common"
