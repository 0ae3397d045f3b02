"""`python -m agent`: the slim launch agent. Flags follow `wandb launch-agent` (-q, -e, -j, -c, -v);
our extensions are flags and LAUNCH_AGENT_* env vars, never keys in launch-config.yaml."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from typing import Any

from agent.config import LOG_FORMATS, AgentSettings, ConfigError, resolve
from agent.manifest import SECURITY_LEVELS

EXIT_BAD_INPUT = 2


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
                 "level": record.levelname.lower(), "logger": record.name, "message": message}
        return json.dumps(entry)


class _Redacting(logging.Formatter):
    """Belt and braces: the API key never reaches a log line, whatever code logged it (messages,
    arguments and tracebacks alike: the whole formatted line is scrubbed)."""

    def __init__(self, inner: logging.Formatter, secret: str) -> None:
        super().__init__()
        self._inner = inner
        self._secret = secret

    def format(self, record: logging.LogRecord) -> str:
        line = self._inner.format(record)
        return line.replace(self._secret, "***") if self._secret else line


def setup_logging(fmt: str, verbosity: int, secret: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    inner = _JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                                                     "%Y-%m-%dT%H:%M:%S")
    handler.setFormatter(_Redacting(inner, secret))
    log = logging.getLogger("launch-agent")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    return log


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent", description="Slim W&B launch agent for Kubernetes")
    p.add_argument("-q", "--queue", dest="queues", action="append", help="queue to poll (repeatable)")
    p.add_argument("-e", "--entity", help="W&B entity of the queues")
    p.add_argument("-j", "--max-jobs", type=int, help="concurrent runs (-1: unlimited)")
    p.add_argument("-c", "--config", help="launch-config.yaml (default ~/.config/wandb/launch-config.yaml)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--security-level", choices=SECURITY_LEVELS, help="Pod Security Standards level to enforce")
    p.add_argument("--log-format", choices=LOG_FORMATS)
    p.add_argument("--health-port", type=int, help="port of /healthz, /readyz, /metrics (0: any free port)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG/~/.kube/config)")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    return p


async def serve(settings: AgentSettings, kubeconfig: str | None, log: logging.Logger) -> int:
    from agent.backend.jobs import DirectUrls, JobResolver, JobStep, builder_type
    from agent.backend.operations import Backend
    from agent.backend.transport import BackendError, GraphQLClient
    from agent.build.step import build_step
    from agent.controller.agent import Agent, FatalError
    from agent.health import HealthServer, Heartbeats
    from agent.kube.client import Kube
    from agent.kube.lease import LeaderElector
    from agent.metrics import Metrics
    from agent.source.git import git_checker

    metrics = Metrics()

    def observe(op: str, seconds: float, ok: bool) -> None:
        metrics.observe("backend_request_seconds", "W&B API latency", seconds, operation=op)
        if not ok:
            metrics.inc("backend_request_errors_total", "W&B API attempts that failed", operation=op)

    try:
        kube = Kube.connect(kubeconfig)
    except Exception as exc:
        log.error("cannot load Kubernetes credentials (%s): %s", kubeconfig or "in-cluster, $KUBECONFIG, "
                  "~/.kube/config", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return EXIT_BAD_INPUT
    # Connections: the pops' own share, and as many again for acks, reports and stop checks beside them.
    client = GraphQLClient(settings.base_url, settings.api_key, timeout=settings.http_timeout,
                           mutation_timeout=settings.mutation_timeout, observe=observe,
                           max_concurrency=2 * settings.pop_width)
    heartbeats = Heartbeats()
    downloads = DirectUrls()
    resolver = JobResolver(client, downloads, max_code_bytes=settings.max_code_bytes,
                           git_check=git_checker(settings.git_credentials_file, settings.git_ca_file or True))
    materialize = None
    if settings.code_pvc_name and settings.code_pvc_mount_path:  # the official PVC mode: code written there
        from agent.source.pvc import pvc_materializer

        materialize = pvc_materializer(settings.code_pvc_mount_path, client, downloads,
                                       credentials_file=settings.git_credentials_file,
                                       verify=settings.git_ca_file or True, max_bytes=settings.max_code_bytes)
    preparers: list[Any] = [JobStep(resolver, builder=builder_type(settings.agent_config), materialize=materialize)]
    build_http = None
    if settings.kaniko is not None:
        build_http, step = build_step(settings, kube, client, downloads, log)
        preparers.append(step)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    elector: LeaderElector | None = None
    if settings.leader_election:
        duration = settings.lease_duration
        elector = LeaderElector(kube, namespace=settings.namespace, name=settings.lease_name,
                                identity=settings.pod_name or f"{settings.identity}-{id(stop):x}", log=log,
                                duration=duration, renew_deadline=duration * 2 / 3, retry=duration / 7.5)
    current: list[Agent] = []

    def ready() -> bool:
        if elector is not None and not elector.valid():
            return True  # a standby is ready: it is waiting for the lease by design
        return bool(current) and current[-1].ready

    health = HealthServer(metrics, live=heartbeats.ok, ready=ready, port=settings.health_port)
    await health.start()
    log.info("health endpoints on port %d", health.port)
    code = 0
    try:
        while not stop.is_set():
            lost = asyncio.Event()
            hold: asyncio.Task[None] | None = None
            if elector is not None:
                log.info("waiting for lease %s/%s as %s", settings.namespace, settings.lease_name, elector.identity)
                if not await elector.acquire(stop):
                    break
                hold = asyncio.create_task(elector.hold(stop, lost))
            agent = Agent(settings, Backend(client, settings.entity), kube, metrics, log, heartbeats=heartbeats,
                          gate=elector.valid if elector is not None else None, preparers=preparers, jobs=resolver)
            current.append(agent)
            try:
                await agent.run(stop, leader_lost=lost if elector is not None else None)
            finally:
                if hold is not None:
                    hold.cancel()
                    await asyncio.gather(hold, return_exceptions=True)
                await agent.monitor.aclose()
                current.clear()
            if not lost.is_set():
                break
            log.info("back to standby")
    except FatalError as exc:
        log.error("%s", exc)
        code = EXIT_BAD_INPUT
    except BackendError as exc:
        if exc.status in (401, 403):
            log.error("cannot start: W&B rejected the API key (HTTP %s); check WANDB_API_KEY and "
                      "WANDB_BASE_URL", exc.status)
            code = EXIT_BAD_INPUT
        else:
            log.error("cannot start: %s", exc)
            code = 1
    finally:
        stop.set()
        if elector is not None:
            await elector.release()
        await downloads.aclose()
        if build_http is not None:
            await build_http.aclose()
        await health.aclose()
        await client.aclose()
        await kube.aclose()
    log.info("agent exited with code %d", code)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fetch-source"]:  # the init container of code and git jobs
        from agent.source.fetch import main as fetch_source
        return fetch_source(argv[1:])
    args = parser().parse_args(argv)
    try:
        settings = resolve(config_path=args.config, entity=args.entity, queues=args.queues,
                           max_jobs=args.max_jobs, verbosity=args.verbose, security_level=args.security_level,
                           log_format=args.log_format, health_port=args.health_port)
    except ConfigError as exc:
        print(f"launch-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.check_config:
        entity = settings.entity or "(the API key's default)"
        print(f"launch-agent: configuration OK (entity {entity}, queues {', '.join(settings.queues)})")
        return 0
    log = setup_logging(settings.log_format, settings.verbosity, settings.api_key)
    try:
        return asyncio.run(serve(settings, args.kubeconfig, log))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
