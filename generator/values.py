"""`values`: derive the chart values from an agent config, queue configs and flags.

Everything is checked first and every problem is reported at once; nothing is written
unless all inputs are good.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from generator import agentconfig, identity, plurals, rbac
from generator.kinds import mixup
from generator.problems import InputError, Problem, split
from generator.queues import QueueInfo, queue_info
from generator.validation import check
from generator.yamlfile import Document, load

DEFAULT_API_KEY_SECRET = "wandb-api-key"
DEFAULT_RELEASE = "launch-agent"
# The Secret (key `password`) the official agent's kaniko jobs read the Azure storage key from.
AZURE_STORAGE_SECRET = "azure-storage-access-key"
DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
SECRET_NAME = re.compile(r"^[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OFFICIAL_REPOS = ("wandb/launch-agent", "docker.io/wandb/launch-agent", "index.docker.io/wandb/launch-agent")


@dataclass(frozen=True)
class ValuesOptions:
    """The `values` command's inputs; `environ` is passed in, never read from the process."""

    config: str
    queues: Sequence[str] = ()
    namespace: str | None = None
    release: str = DEFAULT_RELEASE
    api_key_secret: str | None = None
    api_key_env: str | None = None
    base_url: str | None = None
    identity: str | None = None
    no_identity: bool = False
    inline_secrets: bool = False
    plurals: Sequence[str] = ()
    kaniko_pvc: str | None = None
    kaniko_docker_config_secret: str | None = None
    git_creds_secret: str | None = None
    git_creds_env: str | None = None
    azure_storage_key_env: str | None = None
    agent_image: str | None = None
    security_level: str | None = None
    per_user_keys: bool = False
    check_secrets: bool = True  # False: RBAC only (`rbac`), no check of where secrets come from
    environ: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Derived:
    """What `values` derived: the values (in output order), the RBAC plan and the inputs."""

    values: dict[str, Any]
    plan: rbac.RbacPlan
    agent_namespace: str | None
    targets: list[tuple[str, list[str]]]  # additional namespace -> reasons
    config_doc: Document
    queue_infos: list[QueueInfo]
    official_image: bool
    release: str = DEFAULT_RELEASE
    notes: list[str] = field(default_factory=list)
    owned: list[tuple[str, ...]] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def is_official(image: str | None) -> bool:
    if not image:
        return False
    repo = image.split("@")[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo[: repo.rfind(":")]
    return repo in OFFICIAL_REPOS


def load_checked(path: str, schema_name: str) -> tuple[Document | None, list[Problem]]:
    """Parse and schema-check one file; (None, problems) when it cannot be read or parsed."""
    try:
        doc = load(path)
    except InputError as exc:
        return None, exc.problems
    found = check(doc, schema_name)
    hint = mixup(doc.data, schema_name) if found else None
    if hint:
        return doc, [Problem(doc.file, hint, 1, 1)]
    return doc, found


def _flag_problems(opts: ValuesOptions) -> list[Problem]:
    out: list[Problem] = []

    def bad(flag: str, msg: str) -> None:
        out.append(Problem(flag, msg))

    if opts.namespace is not None and not DNS_LABEL.match(opts.namespace):
        bad("--namespace", f"{opts.namespace!r} is not a namespace name (lower-case letters, digits, '-', "
                           "at most 63 characters)")
    if not DNS_LABEL.match(opts.release) or len(opts.release) > 53:
        bad("--release", f"{opts.release!r} is not a release name (lower-case DNS label, at most 53 characters)")
    if opts.base_url is not None and not re.match(r"^https?://[^\s/]+(?:/\S*)?$", opts.base_url):
        bad("--base-url", f"{opts.base_url!r} is not an http(s) URL")
    for flag, name in (("--api-key-secret", opts.api_key_secret), ("--kaniko-pvc", opts.kaniko_pvc),
                       ("--kaniko-docker-config-secret", opts.kaniko_docker_config_secret),
                       ("--git-creds-secret", opts.git_creds_secret)):
        if name is not None and not SECRET_NAME.match(name):
            bad(flag, f"{name!r} is not a Kubernetes object name (lower-case letters, digits, '-', '.')")
    for flag, var in (("--api-key-env", opts.api_key_env), ("--git-creds-env", opts.git_creds_env),
                      ("--azure-storage-key-env", opts.azure_storage_key_env)):
        if var is None:
            continue
        if not ENV_NAME.match(var):
            bad(flag, f"{var!r} is not an environment variable name")
        elif not opts.environ.get(var):
            bad(flag, f"the environment variable {var} is not set or empty")
        elif not opts.inline_secrets:
            bad(flag, f"this writes the secret from {var} in clear into values.yaml; add --inline-secrets to "
                      "allow that, or name an existing Secret instead")
    return out


def derive(opts: ValuesOptions) -> Derived:
    """Read, check and derive; InputError with every problem found."""
    problems = _flag_problems(opts)
    plural_map, plural_errors = plurals.parse_overrides(list(opts.plurals))
    problems.extend(Problem("--plural", e.split(": ", 1)[1]) for e in plural_errors)

    warnings: list[Problem] = []
    config_doc, found = load_checked(opts.config, "launch-config")
    problems.extend(found)
    if config_doc is not None and not found:
        errors, warned = split(agentconfig.agent_problems(config_doc, kaniko_pvc=bool(opts.kaniko_pvc)))
        problems.extend(errors)
        warnings.extend(warned)

    infos: list[QueueInfo] = []
    for path in opts.queues:
        doc, found = load_checked(path, "queue-config")
        problems.extend(found)
        if doc is not None and not found:
            info, more = queue_info(doc)
            problems.extend(more)
            infos.append(info)
    if problems or config_doc is None:
        raise InputError(problems)

    facts = agentconfig.agent_facts(config_doc.data)
    official = is_official(opts.agent_image)
    try:
        ident = identity.derive_identity(facts.cloud, opts.identity, opt_out=opts.no_identity)
    except identity.IdentityError as exc:
        path = ("environment", "type") if facts.cloud else ()
        problems.append(config_doc.problem(path, str(exc)))
        ident = identity.Identity()
    try:
        plan = rbac.derive_rbac(infos, facts, plural_map, official_image=official, agent_namespace=opts.namespace)
    except rbac.PluralError as exc:
        problems.append(exc.queue.problem("kind", str(exc)))
        plan = rbac.RbacPlan()
    needs_azure_key = facts.builder == "kaniko" and facts.cloud == "azure" and \
        bool(facts.context_store and facts.context_store.startswith("https://"))
    if opts.api_key_secret and opts.api_key_env:
        problems.append(Problem("--api-key-secret", "give --api-key-secret or --api-key-env, not both"))
    if opts.git_creds_secret and opts.git_creds_env:
        problems.append(Problem("--git-creds-secret", "give --git-creds-secret or --git-creds-env, not both"))
    if facts.builder == "kaniko" and facts.push_registry is None and facts.image_repo \
            and not opts.kaniko_docker_config_secret and opts.check_secrets:
        where = ("builder", "destination") if facts.destination else ("registry", "uri")
        warnings.append(config_doc.problem(where, f"kaniko pushes to {facts.image_repo} with no credentials "
                                                  "unless you pass --kaniko-docker-config-secret NAME (a Secret "
                                                  "with a docker config.json that can push there)").as_warning())
    if not official:
        problems.extend(_refusals(infos, opts, facts.secure_mode))
    if problems:
        raise InputError(problems)

    notes: list[str] = []
    if needs_azure_key and not opts.azure_storage_key_env and opts.check_secrets:
        ns = opts.namespace or "<namespace>"
        notes.append(f"kaniko reads the Azure storage account key from the Secret {AZURE_STORAGE_SECRET} "
                     f"(key `password`) in {ns}; create it: kubectl create secret generic {AZURE_STORAGE_SECRET} "
                     f"--from-literal=password=<storage account key> -n {ns}")
    agent_ns = opts.namespace
    additional: dict[str, list[str]] = {}
    for q in infos:
        ns = q.namespace
        if ns is None and official:
            ns = "default"
            notes.append(f"{q.file}: no namespace; the official agent launches such runs into `default`")
        if ns is not None and ns != agent_ns:
            additional.setdefault(ns, []).append(f"queue {q.file}")
    derived = Derived(
        values={}, plan=plan, agent_namespace=agent_ns, targets=sorted(additional.items()),
        config_doc=config_doc, queue_infos=infos, official_image=official, release=opts.release, notes=notes,
        warnings=warnings)
    _fill_values(derived, opts, facts, ident, needs_azure_key)
    return derived


def _refusals(infos: Sequence[QueueInfo], opts: ValuesOptions, secure_mode: bool) -> list[Problem]:
    """Queue configs our agent would refuse for every run (Pod Security baseline, host namespaces...)."""
    from generator.preview import ManifestError, build, queue_secrets

    agent_ns = opts.namespace or "default"
    targets = sorted({q.namespace for q in infos if q.namespace})
    key_secret = opts.api_key_secret or DEFAULT_API_KEY_SECRET
    out = []
    for q in infos:
        try:
            build(q, queue_name="preview", agent_namespace=agent_ns, targets=targets,
                  api_key_secret=key_secret, release=opts.release,
                  security_level=opts.security_level or "baseline", secure_mode=secure_mode,
                  allowed_secrets=queue_secrets(infos, key_secret))
        except ManifestError as exc:
            out.append(Problem(q.file, f"the agent would refuse every run on this queue: {exc.rule}: "
                                       f"{exc.message}"))
    return out


def _fill_values(d: Derived, opts: ValuesOptions, facts: agentconfig.AgentFacts, ident: identity.Identity,
                 needs_azure_key: bool) -> None:
    v: dict[str, Any] = {}
    owned: list[tuple[str, ...]] = []

    def put(path: tuple[str, ...], value: Any) -> None:
        node = v
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        owned.append(path)

    if opts.namespace is not None:
        put(("namespace",), opts.namespace)
    if opts.base_url is not None:
        put(("baseUrl",), opts.base_url)
    if opts.agent_image is not None:
        put(("agent", "image"), opts.agent_image)
    if opts.security_level is not None:
        put(("agent", "securityLevel"), opts.security_level)
    if opts.per_user_keys:
        put(("agent", "perUserApiKeys"), True)
    if opts.api_key_env:
        put(("agent", "apiKey"), opts.environ[opts.api_key_env])
    else:
        put(("agent", "existingApiKeySecret"), opts.api_key_secret or DEFAULT_API_KEY_SECRET)
    if ident.pod_labels:
        put(("agent", "labels"), dict(ident.pod_labels))
    if not d.official_image:
        from generator.preview import queue_secrets

        secrets = queue_secrets(d.queue_infos, opts.api_key_secret or DEFAULT_API_KEY_SECRET)
        if secrets:  # the Secrets the reviewed queue configs name; runs may name no others
            put(("agent", "allowedSecrets"), secrets)
    put(("serviceAccount", "annotations"), dict(ident.annotations))
    put(("additionalTargetNamespaces",), [ns for ns, _ in d.targets])
    put(("rbac", "extraRules"), [])
    put(("rbac", "agentNamespaceRules"), d.plan.agent_namespace_rules())
    put(("rbac", "namespaces"), d.plan.namespace_rules())
    put(("volcano",), False)  # the queues' kinds are granted where they launch, Volcano included
    if opts.kaniko_pvc:
        put(("kanikoPvcName",), opts.kaniko_pvc)
    if opts.kaniko_docker_config_secret:
        put(("kanikoDockerConfigSecret",), opts.kaniko_docker_config_secret)
    if opts.git_creds_secret:
        put(("existingGitCredsSecret",), opts.git_creds_secret)
    if opts.git_creds_env:
        put(("gitCreds",), opts.environ[opts.git_creds_env])
    if opts.azure_storage_key_env:
        put(("azureStorageAccessKey",), opts.environ[opts.azure_storage_key_env])
    elif needs_azure_key:
        put(("existingAzureStorageSecret",), AZURE_STORAGE_SECRET)
    put(("launchConfig",), d.config_doc.text)
    d.values = v
    d.owned = owned
