"""Writing derived values as a commented values.yaml, or into an existing one (`--update`).

`--update` is a ruamel.yaml round trip: the user's comments, key order and other keys stay;
only the keys the generator owns are replaced.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import LiteralScalarString

from generator import identity
from generator.problems import InputError, Problem
from generator.validation import check
from generator.values import Derived
from generator.yamlfile import parse, read_text

# Map-valued keys the generator merges into instead of replacing, and the sub-keys it owns there.
MERGED: dict[tuple[str, ...], tuple[str, ...]] = {
    ("serviceAccount", "annotations"): tuple(identity.ANNOTATIONS.values()),
    ("agent", "labels"): (identity.AZURE_POD_LABEL[0],),
}
API_KEY_KEYS = ("apiKey", "existingApiKeySecret", "useExternalWandbSecret")


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    y.preserve_quotes = True
    return y


def _commented(value: Any) -> Any:
    if isinstance(value, dict):
        cm = CommentedMap()
        for k, v in value.items():
            cm[k] = _commented(v)
        return cm
    if isinstance(value, list):
        return CommentedSeq([_commented(v) for v in value])
    return value


def _comments(d: Derived, sources: Sequence[str]) -> dict[tuple[str, ...], str]:
    ns = d.agent_namespace or "<release namespace>"
    secret = d.values.get("agent", {}).get("existingApiKeySecret")
    out = {
        ("namespace",): "Namespace of the agent (--namespace).",
        ("baseUrl",): "W&B API URL (--base-url).",
        ("agent",): "The agent Deployment.",
        ("agent", "image"): "Agent image (--agent-image).",
        ("agent", "securityLevel"): "Pod Security Standard the agent enforces on runs (--security-level).",
        ("agent", "apiKey"): "W&B API key, written in clear because of --inline-secrets.",
        ("agent", "labels"): "Azure Workload Identity: the pod label that turns the webhook on.",
        ("serviceAccount",): "The agent's ServiceAccount.",
        ("serviceAccount", "annotations"): "Workload identity for environment.type of the agent config "
                                           "(--identity); empty with --no-identity or without environment.",
        ("additionalTargetNamespaces",): "Namespaces the queues launch into besides the agent's own ("
                                         + (", ".join(f"{n}: {', '.join(r)}" for n, r in d.targets) or "none")
                                         + ").",
        ("rbac",): "RBAC beyond the chart's defaults (Jobs, pods, logs, events, the API-key Secret).",
        ("rbac", "extraRules"): "In every target namespace: nothing; each kind is granted where a queue sends it.",
        ("rbac", "agentNamespaceRules"): "In the agent namespace only: the custom resources of queues without a "
                                         "namespace, and what kaniko build Jobs need.",
        ("rbac", "namespaces"): "Per target namespace: the custom resources the queues launch there.",
        ("volcano",): "Volcano rules come from the queue configs above, not from the chart's detection.",
        ("kanikoPvcName",): "PersistentVolumeClaim for kaniko build contexts (--kaniko-pvc).",
        ("kanikoDockerConfigSecret",): "Secret with the docker config.json kaniko pushes with.",
        ("existingGitCredsSecret",): "Existing Secret with .git-credentials and .gitconfig (--git-creds-secret).",
        ("gitCreds",): "git credentials, written in clear because of --inline-secrets.",
        ("azureStorageAccessKey",): "Azure storage key for kaniko build contexts (--inline-secrets).",
        ("launchConfig",): f"The agent config, verbatim from {sources[0]}; checked against "
                           "schemas/launch-config.schema.json.",
    }
    if secret:
        out[("agent", "existingApiKeySecret")] = (
            f"Existing Secret (key `password`) with the W&B API key, in {ns} and every target namespace:\n"
            f"kubectl create secret generic {secret} --from-literal=password=<api key> -n <namespace>")
    return out


def _annotate(node: CommentedMap, path: tuple[str, ...], comments: dict[tuple[str, ...], str],
              indent: int) -> None:
    for key in list(node.keys()):
        sub = (*path, key)
        text = comments.get(sub)
        if text:
            node.yaml_set_comment_before_after_key(key, before=text, indent=indent)
        if isinstance(node[key], CommentedMap) and sub in {k[: len(sub)] for k in comments if len(k) > len(sub)}:
            _annotate(node[key], sub, comments, indent + 2)


def _flow_rules(seq: Any) -> None:
    """PolicyRule lists (apiGroups, resources, verbs) in flow style: one rule reads as three lines."""
    for rule in seq if isinstance(seq, list) else []:
        for value in rule.values() if isinstance(rule, dict) else []:
            if isinstance(value, CommentedSeq):
                value.fa.set_flow_style()


def _rule_comments(seq: CommentedSeq, reasons: list[str], indent: int) -> None:
    _flow_rules(seq)
    for i, why in enumerate(reasons):
        if i < len(seq):
            seq.yaml_set_comment_before_after_key(i, before=why, indent=indent)


def _reasons(grants: Sequence[Any], rules: list[dict[str, Any]]) -> list[str]:
    out = []
    for rule in rules:
        why: list[str] = []
        for g in grants:
            if [g.group] == rule["apiGroups"] and g.resource in rule["resources"]:
                why.extend(r for r in g.reasons if r not in why)
        out.append("; ".join(why))
    return out


def _dump(y: YAML, data: Any) -> str:
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()


def _set_literal(node: CommentedMap, key: str, text: str) -> None:
    node[key] = LiteralScalarString(text) if text.strip() else text


def render_new(d: Derived, sources: Sequence[str], command: str) -> str:
    y = _yaml()
    root = _commented(d.values)
    _set_literal(root, "launchConfig", d.values["launchConfig"])
    header = (f"Values for charts/launch-agent, generated by:\n  {command}\n"
              "Re-run with --update values.yaml to refresh the generated keys; other keys and comments stay.\n"
              f"Install: helm install {d.release} charts/launch-agent -n {d.agent_namespace or '<namespace>'} "
              "-f values.yaml")
    root.yaml_set_start_comment(header)
    _annotate(root, (), _comments(d, sources), 0)
    rbac_node = root.get("rbac")
    if isinstance(rbac_node, CommentedMap):
        _rule_comments(rbac_node["agentNamespaceRules"],
                       _reasons(d.plan.agent_ns, d.values["rbac"]["agentNamespaceRules"]), 4)
        for ns, node in rbac_node["namespaces"].items():
            _rule_comments(node["rules"], _reasons(d.plan.namespaces[ns], d.values["rbac"]["namespaces"][ns]["rules"]),
                           8)
    return _finish(y, root, d, sources[0])


def _finish(y: YAML, root: Any, d: Derived, name: str) -> str:
    text = _dump(y, root)
    loaded = yaml.safe_load(text)
    if loaded.get("launchConfig") != d.values["launchConfig"]:  # a text ruamel cannot keep as a literal
        root["launchConfig"] = d.values["launchConfig"]
        text = _dump(y, root)
    problems = check(parse(name, text), "values")
    if problems:
        raise InputError(problems)
    return text


def _get_map(root: CommentedMap, path: tuple[str, ...]) -> CommentedMap:
    node = root
    for part in path:
        child = node.get(part)
        if not isinstance(child, dict):
            child = CommentedMap()
            node[part] = child
        node = child
    return node


def render_update(existing: str, d: Derived, *, explicit_api_key: bool) -> str:
    """`existing` values text with the generated keys replaced; InputError if it is not a values file."""
    text = read_text(existing)
    y = _yaml()
    try:
        root = y.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise InputError([Problem(existing, f"YAML syntax error: {getattr(exc, 'problem', exc)}", line, col)]) \
            from None
    if root is None:
        root = CommentedMap()
    if not isinstance(root, CommentedMap):
        raise InputError([Problem(existing, "a values file must be a mapping", 1, 1)])
    agent_existing = root.get("agent") if isinstance(root.get("agent"), dict) else {}
    has_key_source = any(agent_existing.get(k) for k in API_KEY_KEYS)
    for path in d.owned:
        if path[:1] == ("agent",) and path[-1] in API_KEY_KEYS:
            if not explicit_api_key and has_key_source:
                continue
            agent = _get_map(root, ("agent",))
            for k in API_KEY_KEYS:
                if k != path[-1] and k in agent:
                    del agent[k]
        value = _lookup(d.values, path)
        parent = _get_map(root, path[:-1])
        if path in MERGED:
            target = _get_map(root, path)
            for k in MERGED[path]:
                if k in target and k not in value:
                    del target[k]
            for k, v in value.items():
                target[k] = v
        elif path == ("launchConfig",):
            _set_literal(parent, "launchConfig", value)
        else:
            parent[path[-1]] = _commented(value)
            if path == ("rbac", "namespaces"):
                for node in parent[path[-1]].values():
                    _flow_rules(node["rules"])
            elif path[0] == "rbac":
                _flow_rules(parent[path[-1]])
    if ("agent", "labels") not in d.owned:
        labels = _lookup(root, ("agent", "labels"))
        if isinstance(labels, dict):
            labels.pop(identity.AZURE_POD_LABEL[0], None)
    return _finish(y, root, d, existing)


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data
