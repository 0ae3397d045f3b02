"""The five commands; each returns an exit code and raises InputError for bad input."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from generator import rbac
from generator.atomic import write_text
from generator.cli import command_line
from generator.kinds import detect
from generator.output import render_new, render_update
from generator.problems import InputError, Problem, split
from generator.queues import queue_info
from generator.validation import check
from generator.values import Derived, ValuesOptions, derive, load_checked
from generator.yamlfile import Document, parse

# ------------------------------------------------------------------------------------------ values


def options(args: argparse.Namespace, env: Mapping[str, str]) -> ValuesOptions:
    get = vars(args).get
    return ValuesOptions(
        config=args.config, queues=tuple(args.queues), namespace=args.namespace,
        release=get("release") or "launch-agent", api_key_secret=get("api_key_secret"),
        api_key_env=get("api_key_env"), base_url=get("base_url"), identity=get("identity"),
        no_identity=bool(get("no_identity")), inline_secrets=bool(get("inline_secrets")),
        plurals=tuple(args.plural), kaniko_pvc=get("kaniko_pvc"),
        kaniko_docker_config_secret=get("kaniko_docker_config_secret"),
        git_creds_secret=get("git_creds_secret"), git_creds_env=get("git_creds_env"),
        azure_storage_key_env=get("azure_storage_key_env"), agent_image=args.agent_image,
        security_level=get("security_level"), per_user_keys=bool(get("per_user_keys")), environ=env)


def cmd_values(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, err: TextIO,
               argv: Sequence[str]) -> int:
    for flag in ("output", "update"):
        target = getattr(args, flag)
        if target is None:
            continue
        if Path(target).is_dir():
            raise InputError([Problem(target, "is a directory; expected a values file path")])
        parent = Path(target).parent
        if not parent.is_dir():
            raise InputError([Problem(target, f"the directory {parent} does not exist")])
    derived = derive(options(args, env))
    for warning in derived.warnings:
        print(warning, file=err)
    if args.update:
        text = render_update(args.update, derived, explicit_api_key=bool(args.api_key_secret or args.api_key_env))
    else:
        text = render_new(derived, [args.config], command_line(argv))
    target = args.update or args.output
    if target:
        try:
            write_text(target, text)
        except OSError as exc:
            raise InputError([Problem(target, f"cannot write: {exc.strerror or exc}")]) from None
        print(f"wrote {target}", file=err)
    else:
        out.write(text)
    for note in derived.notes:
        print(f"note: {note}", file=err)
    return 0


# ---------------------------------------------------------------------------------------- validate

def _embedded_config(doc: Document) -> tuple[Document | None, list[Problem]]:
    text = doc.data.get("launchConfig") if isinstance(doc.data, dict) else None
    if not isinstance(text, str) or not text.strip():
        return None, []
    line, _ = doc.where(("launchConfig",))
    try:
        inner = parse(doc.file, text)
    except InputError as exc:
        return None, [Problem(p.file, p.message, (p.line or 1) + line, p.col, "launchConfig") for p in exc.problems]
    inner.line_offset = line
    lines = doc.text.split("\n")
    if line < len(lines):
        first = lines[line]
        inner.col_offset = len(first) - len(first.lstrip(" "))
    found = check(inner, "launch-config")
    if not found:
        from generator.agentconfig import agent_problems
        found = agent_problems(inner, kaniko_pvc=bool(doc.data.get("kanikoPvcName")))
    return inner, [Problem(p.file, p.message, p.line, p.col, f"launchConfig: {p.key}" if p.key else "launchConfig",
                           p.warning) for p in found]


def _rules_in(data: dict[str, Any], namespace: str | None) -> list[Any]:
    """The chart's extra rules of the Role in `namespace` (None: the agent's namespace)."""
    rbac_values = data.get("rbac") if isinstance(data.get("rbac"), dict) else {}
    rules = list(rbac_values.get("extraRules") or [])
    agent_ns = data.get("namespace") or None
    if namespace is None or namespace == agent_ns:
        rules += rbac_values.get("agentNamespaceRules") or []
    per_ns = rbac_values.get("namespaces") if isinstance(rbac_values.get("namespaces"), dict) else {}
    if namespace is not None and isinstance(per_ns.get(namespace), dict):
        rules += per_ns[namespace].get("rules") or []
    if data.get("volcano") is True:
        rules.append({"apiGroups": ["batch.volcano.sh"], "resources": ["jobs"], "verbs": ["create"]})
    return rules


def _coverage(values: Document, queues: Sequence[Document]) -> list[Problem]:
    """Queues whose namespace or custom resource the values file does not grant."""
    data = values.data
    targets = set(data.get("additionalTargetNamespaces") or [])
    if data.get("namespace"):
        targets.add(data["namespace"])
    out: list[Problem] = []
    for qdoc in queues:
        info, _ = queue_info(qdoc)
        if info.namespace and info.namespace not in targets:
            out.append(qdoc.problem(info.namespace_path or (), f"namespace {info.namespace} is not a target of "
                                    f"{values.file} (additionalTargetNamespaces)"))
        if not info.is_job:
            rules = _rules_in(data, info.namespace)
            granted = any(info.group in r.get("apiGroups", []) and "create" in r.get("verbs", [])
                          and not r.get("resourceNames") for r in rules if isinstance(r, dict))
            if not granted:
                where = info.namespace or "the agent namespace"
                out.append(info.problem("kind", f"{values.file} grants no rule for {info.kind_label} in {where}"))
    return out


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    problems: list[Problem] = []
    values_docs: list[Document] = []
    queue_docs: list[Document] = []
    for path in args.files:
        from generator.yamlfile import load
        try:
            doc = load(path)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        kind = args.kind or detect(doc.data)
        if kind is None:
            problems.append(Problem(path, "cannot tell whether this is an agent config, a queue config or a "
                                          "values file; pass --as", 1, 1))
            continue
        found = check(doc, kind)
        if kind == "launch-config" and not found:
            from generator.agentconfig import agent_problems
            found = agent_problems(doc)
        if kind == "values":
            _, more = _embedded_config(doc)
            found.extend(more)
        found, warned = split(found)
        for warning in warned:
            print(warning, file=err)
        if kind == "values" and not found:
            values_docs.append(doc)
        if kind == "queue-config" and not found:
            found = queue_info(doc)[1]
            if not found:
                queue_docs.append(doc)
        problems.extend(found)
        if not found:
            print(f"{path}: ok ({kind})", file=out)
    for vdoc in values_docs:
        problems.extend(_coverage(vdoc, queue_docs))
    if problems:
        raise InputError(problems)
    return 0


# ------------------------------------------------------------------------------------------- queue


def cmd_queue(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from generator.preview import ManifestError, RunFacts, build, queue_secrets

    qdoc, problems = load_checked(args.queue, "queue-config")
    entity, secure = args.entity, False
    if args.config:
        cdoc, more = load_checked(args.config, "launch-config")
        problems.extend(more)
        if cdoc is not None and not more:
            from generator.agentconfig import agent_facts
            entity = entity or cdoc.data.get("entity")
            secure = agent_facts(cdoc.data).secure_mode
    if problems or qdoc is None:
        raise InputError(problems)
    info, more = queue_info(qdoc)
    if more:
        raise InputError(more)
    facts = RunFacts(image=args.image, run_id=args.run_id, entity=str(entity or "entity"), project=args.project,
                     run_name=args.run_name, author=args.author, item_id=args.item_id)
    try:
        objs = build(info, queue_name=args.queue_name or Path(args.queue).stem, agent_namespace=args.namespace,
                     targets=(info.namespace,) if info.namespace else (), api_key_secret=args.api_key_secret,
                     release=args.release, security_level=args.security_level, secure_mode=secure, run=facts,
                     allowed_secrets=queue_secrets([info], args.api_key_secret))
    except ManifestError as exc:
        raise InputError([Problem(args.queue, f"the agent refuses this queue config: {exc.rule}: "
                                              f"{exc.message}")]) from None
    out.write(yaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False))
    return 0


# -------------------------------------------------------------------------------------------- rbac


def rbac_table(d: Derived) -> list[dict[str, Any]]:
    """Per namespace: each rule with its verbs and the reasons it is granted."""
    official = d.official_image
    agent_ns = d.agent_namespace or "<release namespace>"
    rows: list[dict[str, Any]] = []
    namespaces = [(agent_ns, ["agent namespace"])] + [(ns, why) for ns, why in d.targets]
    for ns, why in namespaces:
        rules: list[dict[str, Any]] = []
        for group, resource, verbs, reason in rbac.CHART_DEFAULTS:
            if resource == "secrets" and official:
                rules.append({"apiGroup": group, "resource": resource, "verbs": ["create", "get", "delete"],
                              "resourceNames": [], "why": ["chart default, official image: per-run API-key Secret"]})
                continue
            if (group, resource) == ("batch", "jobs") and official:
                verbs = rbac.OFFICIAL_LAUNCH_VERBS
            rules.append({"apiGroup": group, "resource": resource, "verbs": list(verbs), "resourceNames": [],
                          "why": [f"chart default: {reason}"]})
        grants = d.plan.grants_in(None if ns == agent_ns else ns)
        for g in grants:
            rules.append({"apiGroup": g.group, "resource": g.resource, "verbs": list(g.verbs),
                          "resourceNames": list(g.resource_names), "why": list(g.reasons)})
        rows.append({"namespace": ns, "why": why, "rules": rules})
    return rows


def cmd_rbac(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    env: dict[str, str] = {}
    d = derive(ValuesOptions(config=args.config, queues=tuple(args.queues), namespace=args.namespace,
                             plurals=tuple(args.plural), agent_image=args.agent_image, no_identity=True,
                             check_secrets=False, environ=env))
    table = rbac_table(d)
    if args.format == "json":
        out.write(json.dumps(table, indent=2) + "\n")
        return 0
    for block in table:
        out.write(f"namespace {block['namespace']} ({'; '.join(block['why'])})\n")
        for rule in block["rules"]:
            res = f"{rule['apiGroup']}/{rule['resource']}" if rule["apiGroup"] else rule["resource"]
            if rule["resourceNames"]:
                res += f" [{', '.join(rule['resourceNames'])}]"
            out.write(f"  {res:<40} {','.join(rule['verbs']):<30} {'; '.join(rule['why'])}\n")
    out.write("cluster-wide: nothing (no ClusterRole, no ClusterRoleBinding)\n")
    return 0


# ------------------------------------------------------------------------------------------ schema


def cmd_schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from generator import chart_schema, k8s_schema

    try:
        expected = chart_schema.expected_files()
    except k8s_schema.SchemaSourceError as exc:
        raise InputError([Problem("schemas/kubernetes.defs.json", str(exc))]) from None
    stale = []
    for path, text in expected.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            write_text(path, text)
            print(f"wrote {path}", file=err)
    if args.check and stale:
        for path in stale:
            print(f"{path}: out of date; run python -m generator schema", file=err)
        return 1
    return 0
