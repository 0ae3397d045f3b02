"""Resolves the agent's settings the way the official agent does, plus our own flags and env vars.

Sources, later wins: defaults, `launch-config.yaml` (`-c` or `~/.config/wandb/launch-config.yaml`),
`WANDB_ENTITY` / `WANDB_LAUNCH_MAX_JOBS`, CLI flags. The file is validated against the
`launch-config` schema; our extensions never go into that file (they are flags and env vars).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.build.job import KanikoSettings
from agent.build.settings import BuildConfigError, kaniko_settings
from agent.manifest import SECURITY_LEVELS, ManifestSettings

DEFAULT_CONFIG_PATH = Path("~/.config/wandb/launch-config.yaml")
DEFAULT_BASE_URL = "https://api.wandb.ai"
LOG_FORMATS = ("text", "json")


class ConfigError(Exception):
    """Bad user input: one line naming the source, the key and what is allowed."""


@dataclass(frozen=True)
class AgentSettings:
    entity: str
    queues: tuple[str, ...]
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    max_jobs: float = 1  # math.inf when unlimited
    max_schedulers: float = 1
    secure_mode: bool = False
    verbosity: int = 0
    stopped_run_timeout: float = 60.0
    start_timeout: float = 1800.0  # <= 0 disables
    poll_interval: float = 10.0
    pop_width: int = 16  # pops in flight at once while a queue gives items
    sweep_interval: float = 5.0  # seconds between a sweep scheduler's passes (the official default)
    namespace: str = "default"
    target_namespaces: tuple[str, ...] = ()
    api_key_secret: str = "wandb-api-key"
    release: str = ""
    security_level: str = "baseline"
    log_format: str = "text"
    health_port: int = 8080
    leader_election: bool = False
    lease_name: str = "launch-agent"
    pod_name: str = ""
    workload_kinds: tuple[str, ...] = ()  # extra "group/version/Kind" to re-adopt on start
    allowed_service_accounts: tuple[str, ...] = ()
    allowed_secrets: tuple[str, ...] = ()  # Secrets launched pods may reference besides the API key's
    agent_config: Mapping[str, Any] = field(default_factory=dict)  # the file's dict, sent to W&B
    version: str = ""
    http_timeout: float = 20.0
    kaniko: KanikoSettings | None = None  # builder.type kaniko; None: prebuilt images only
    agent_image: str = ""  # LAUNCH_AGENT_IMAGE: the agent's own image (fetch steps of builds)
    # Jobs (runSpec.job): the official agent's code PVC, the Secret with git credentials in target
    # namespaces, per-run key Secrets (agent_image also runs the init containers that fetch code).
    code_pvc_name: str = ""
    code_pvc_mount_path: str = ""
    git_credentials_secret: str = ""
    git_credentials_file: str = ""
    git_ca_file: str = ""  # GIT_SSL_CAINFO, as git reads it
    max_code_bytes: int = 1 << 30
    per_user_keys: bool = False
    mutation_timeout: float = 120.0  # pops, fails, pushes: waited for longer, never sent twice blindly
    max_resumes: int = 5  # a preempted run is requeued at most this many times
    resync_interval: float = 300.0  # full re-list and re-discovery of kinds
    shutdown_grace: float = 20.0  # after SIGTERM: seconds for creates, acks and reports in flight
    lease_duration: float = 15.0

    @property
    def identity(self) -> str:
        return self.release or "launch-agent"

    def manifest_settings(self) -> ManifestSettings:
        return ManifestSettings(
            agent_namespace=self.namespace,
            target_namespaces=self.target_namespaces,
            api_key_secret=self.api_key_secret,
            base_url=self.base_url,
            agent_identity=self.identity,
            queue_entity=self.entity,
            security_level=self.security_level,
            secure_mode=self.secure_mode,
            allowed_service_accounts=self.allowed_service_accounts,
            source_image=self.agent_image,
            code_pvc_name=self.code_pvc_name,
            code_pvc_mount_path=self.code_pvc_mount_path,
            git_credentials_secret=self.git_credentials_secret,
            max_code_bytes=self.max_code_bytes,
            per_user_keys=self.per_user_keys,
            allowed_secrets=self.allowed_secrets,
        )


def load_config_file(path: str | None, home: Path | None = None) -> tuple[dict[str, Any], str]:
    """The config file as a dict and the path it came from ('' when none)."""
    explicit = path is not None
    p = Path(path) if explicit else (home / ".config/wandb/launch-config.yaml" if home
                                     else DEFAULT_CONFIG_PATH.expanduser())
    if not p.exists():
        if explicit:
            raise ConfigError(f"{p}: config file not found")
        return {}, ""
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys")
    return data, str(p)


def validate_file(data: Mapping[str, Any], source: str) -> None:
    """Validate with the shared `launch-config` schema (schemas package)."""
    import schemas  # the schemas package ships with the agent

    validator = schemas.validator("launch-config")
    errors = sorted(validator.iter_errors(dict(data)), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{source or 'launch-config'}: key {key}: {err.message}")


def _int(value: Any, what: str) -> int:
    """Integers as the official agent coerces them: 5, "5", " 5 ", "5.0", "1_000", true."""
    if isinstance(value, bool):
        return int(value)
    try:
        text = str(value).strip().replace("_", "")
        number = float(text)
        if not number.is_integer():
            raise ValueError
        return int(number)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not an integer") from None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "on", "t", "true", "y", "yes")
    return bool(value)


def _limit(value: Any, what: str) -> float:
    n = _int(value, what)
    if n == -1:
        return math.inf
    if n < 1:
        raise ConfigError(f"{what}: {n} is not allowed (a positive integer, or -1 for unlimited)")
    return n


def _float(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a number") from None


def _positive(value: str, what: str) -> int:
    n = _int(value, what)
    if n < 1:
        raise ConfigError(f"{what}: {n} is not allowed (a positive number of bytes)")
    return n


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def resolve(*, config_path: str | None = None, entity: str | None = None, queues: list[str] | None = None,
            max_jobs: int | None = None, verbosity: int = 0, security_level: str | None = None,
            log_format: str | None = None, health_port: int | None = None,
            env: Mapping[str, str] | None = None, home: Path | None = None,
            validate: bool = True) -> AgentSettings:
    env = dict(os.environ if env is None else env)
    data, source = load_config_file(config_path, home)
    where = source or "launch-config"
    resolved: dict[str, Any] = {"max_jobs": 1, "max_schedulers": 1, "queues": [], "verbosity": 0}
    resolved.update({k: v for k, v in data.items() if v is not None or k == "entity"})
    if env.get("WANDB_ENTITY"):
        resolved["entity"] = env["WANDB_ENTITY"]
    if env.get("WANDB_LAUNCH_MAX_JOBS"):
        resolved["max_jobs"] = _int(env["WANDB_LAUNCH_MAX_JOBS"], "WANDB_LAUNCH_MAX_JOBS")
    if entity:
        resolved["entity"] = entity
    if max_jobs is not None:
        resolved["max_jobs"] = max_jobs
    if queues:
        resolved["queues"] = list(queues)
    if verbosity:
        resolved["verbosity"] = verbosity
    single = resolved.pop("queue", None)
    if single is not None:
        if not isinstance(single, str):
            raise ConfigError(f"{where}: key queue: must be a string")
        resolved["queues"] = [*resolved["queues"], single]
    queue_list = resolved.get("queues") or []
    if not isinstance(queue_list, list) or not all(isinstance(q, str) and q for q in queue_list):
        raise ConfigError(f"{where}: key queues: must be a list of queue names")
    if not queue_list:
        raise ConfigError(f"{where}: key queues: no queue to poll (set queues in the config or pass -q)")
    if validate:  # like the official agent: the file merged with env and flags
        validate_file(resolved, source)
    api_key = env.get("WANDB_API_KEY", "")
    if not api_key:
        raise ConfigError("WANDB_API_KEY: not set (the agent needs a W&B API key)")

    level = security_level or env.get("LAUNCH_AGENT_SECURITY_LEVEL") or "baseline"
    if level not in SECURITY_LEVELS:
        raise ConfigError(f"security level: {level!r} is not one of {', '.join(SECURITY_LEVELS)}")
    fmt = log_format or env.get("LAUNCH_AGENT_LOG_FORMAT") or "text"
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"log format: {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    port = health_port if health_port is not None else _int(env.get("LAUNCH_AGENT_HEALTH_PORT", "8080"),
                                                            "LAUNCH_AGENT_HEALTH_PORT")
    start_timeout = _float(env.get("WANDB_LAUNCH_START_TIMEOUT", "1800"), "WANDB_LAUNCH_START_TIMEOUT")
    namespace = env.get("LAUNCH_AGENT_NAMESPACE") or _service_account_namespace() or "default"
    release = env.get("WANDB_RELEASE_NAME", "")
    secret = env.get("LAUNCH_AGENT_API_KEY_SECRET") or (f"wandb-api-key-{release}" if release
                                                         else "wandb-api-key")
    version = env.get("WANDB_AGENT_VERSION", "")
    if not version or version == "wandb-launch-agent":
        from agent import __version__
        version = f"launch-agent@{__version__}"
    agent_config = {k: v for k, v in resolved.items() if k != "project"}
    try:
        kaniko = kaniko_settings(resolved, env, where)
    except BuildConfigError as exc:
        raise ConfigError(str(exc)) from None
    return AgentSettings(
        entity=str(resolved.get("entity") or ""),  # empty: the API key's default entity
        queues=tuple(queue_list),
        api_key=api_key,
        base_url=(env.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
        max_jobs=_limit(resolved.get("max_jobs", 1), f"{where}: key max_jobs"),
        max_schedulers=_limit(resolved.get("max_schedulers", 1), f"{where}: key max_schedulers"),
        secure_mode=_flag(resolved.get("secure_mode", False)),
        verbosity=_int(resolved.get("verbosity", 0), f"{where}: key verbosity"),
        stopped_run_timeout=_float(str(resolved.get("stopped_run_timeout", 60)),
                                   f"{where}: key stopped_run_timeout"),
        start_timeout=start_timeout,
        poll_interval=_float(env.get("LAUNCH_AGENT_POLL_INTERVAL", "10"), "LAUNCH_AGENT_POLL_INTERVAL"),
        pop_width=max(1, _int(env.get("LAUNCH_AGENT_POP_WIDTH", "16"), "LAUNCH_AGENT_POP_WIDTH")),
        sweep_interval=_float(env.get("LAUNCH_AGENT_SWEEP_INTERVAL", "5"), "LAUNCH_AGENT_SWEEP_INTERVAL"),
        namespace=namespace,
        target_namespaces=_csv(env.get("LAUNCH_AGENT_TARGET_NAMESPACES")),
        api_key_secret=secret,
        release=release,
        security_level=level,
        log_format=fmt,
        health_port=port,
        leader_election=_bool(env.get("LAUNCH_AGENT_LEADER_ELECTION")),
        lease_name=env.get("LAUNCH_AGENT_LEASE_NAME") or (f"launch-agent-{release}" if release
                                                          else "launch-agent"),
        pod_name=env.get("LAUNCH_AGENT_POD_NAME") or env.get("HOSTNAME", ""),
        workload_kinds=_csv(env.get("LAUNCH_AGENT_WORKLOAD_KINDS")),
        allowed_service_accounts=_csv(env.get("LAUNCH_AGENT_ALLOWED_SERVICE_ACCOUNTS")),
        allowed_secrets=_csv(env.get("LAUNCH_AGENT_ALLOWED_SECRETS")),
        agent_config=agent_config,
        version=version,
        http_timeout=_float(env.get("WANDB_HTTP_TIMEOUT", "20"), "WANDB_HTTP_TIMEOUT"),
        kaniko=kaniko,
        agent_image=env.get("LAUNCH_AGENT_IMAGE", ""),
        code_pvc_name=env.get("WANDB_LAUNCH_CODE_PVC_NAME", ""),
        code_pvc_mount_path=env.get("WANDB_LAUNCH_CODE_PVC_MOUNT_PATH", ""),
        git_credentials_secret=env.get("LAUNCH_AGENT_GIT_CREDENTIALS_SECRET", ""),
        git_credentials_file=env.get("LAUNCH_AGENT_GIT_CREDENTIALS_FILE") or str(
            (home or Path(env.get("HOME") or Path.home())) / ".git-credentials"),
        git_ca_file=env.get("GIT_SSL_CAINFO", ""),
        max_code_bytes=_positive(env.get("LAUNCH_AGENT_MAX_CODE_BYTES", str(1 << 30)),
                                 "LAUNCH_AGENT_MAX_CODE_BYTES"),
        per_user_keys=_bool(env.get("LAUNCH_AGENT_PER_USER_KEYS")),
        mutation_timeout=_seconds(env, "LAUNCH_AGENT_MUTATION_TIMEOUT", "120"),
        max_resumes=_int(env.get("LAUNCH_AGENT_MAX_RESUMES", "5"), "LAUNCH_AGENT_MAX_RESUMES"),
        resync_interval=_seconds(env, "LAUNCH_AGENT_RESYNC_INTERVAL", "300"),
        shutdown_grace=_seconds(env, "LAUNCH_AGENT_SHUTDOWN_GRACE", "20"),
        lease_duration=_seconds(env, "LAUNCH_AGENT_LEASE_DURATION", "15"),
    )


def _seconds(env: Mapping[str, str], name: str, default: str) -> float:
    value = _float(env.get(name, default), name)
    if value <= 0:
        raise ConfigError(f"{name}: {value:g} is not allowed (a positive number of seconds)")
    return value


def _service_account_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip()
    except OSError:
        return ""
