"""extraObjects: manifests installed with the release, templated and labelled."""

from __future__ import annotations

from chart_checks import BASIC, of_kind


def test_maps_and_strings_are_templated_and_labelled(render) -> None:
    values = {
        "namespace": "agents",
        "extraObjects": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{{ .Release.Name }}-extra", "namespace": "agents"},
             "data": {"port": "8080"}},
            'apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\n  namespace: {{ include "launch-agent.namespace" . }}\n'
            '  labels:\n    mine: "yes"\nstringData:\n  token: "true"\n',
        ],
    }
    objs = render(files=(BASIC,), values=values, release="rel")
    cm = next(o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"] == "rel-extra")
    assert cm["data"]["port"] == "8080"
    secret = next(o for o in of_kind(objs, "Secret") if o["metadata"]["name"] == "token")
    assert secret["metadata"]["namespace"] == "agents"
    assert secret["stringData"]["token"] == "true"
    labels = secret["metadata"]["labels"]
    assert labels["mine"] == "yes" and labels["app.kubernetes.io/instance"] == "rel"
    assert labels["app.kubernetes.io/component"] == "extra"


def test_bad_extra_objects_fail_clearly(render_error) -> None:
    assert "extraObjects[0]: needs apiVersion and kind" in render_error({"extraObjects": ["metadata: {name: x}\n"]}, files=(BASIC,))
    assert "extraObjects[0]: not a YAML mapping" in render_error({"extraObjects": ["a: [b\n"]}, files=(BASIC,))
