"""The prepare stage's promise to the steps that take minutes (an image build): the item is
recorded and acked before the step runs, the step's progress survives the agent, a new agent
resumes the step from it, other items never wait for it, and the item launches once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from apiproxy import TcpProxy
from harness import FINISHED, RUN_SECONDS, check_runs, run_spec, wait_for

from agent.backend.operations import Backend
from agent.backend.transport import GraphQLClient
from agent.config import resolve
from agent.controller.agent import Agent
from agent.controller.prepare import PrepareContext
from agent.kube.client import CONFIGMAPS, Kube
from agent.metrics import Metrics


class SlowStep:
    """A durable step that records a token, then waits until the test lets it finish."""

    name = "slow"
    durable = True
    concurrency = 2

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[dict[str, Any]] = []

    def wants(self, spec: Mapping[str, Any]) -> bool:
        return bool(spec.get("slow"))

    async def prepare(self, ctx: PrepareContext) -> dict[str, Any]:
        self.started.append(dict(ctx.progress))
        if "token" not in ctx.progress:
            await ctx.save(token=f"t-{len(self.started)}")
        await self.release.wait()
        return {k: v for k, v in ctx.spec.items() if k != "slow"}


def test_a_durable_step_is_resumed_by_the_next_agent_and_blocks_nothing(site, tally):
    q = site.queue("prep", annotations={RUN_SECONDS: "1"})
    slow, fast = run_spec(f"slow-{site.release}", slow=True), run_spec(f"fast-{site.release}")
    slow_item, fast_item = site.emu.enqueue(q, slow), site.emu.enqueue(q, fast)
    proxy = TcpProxy(site.env.apiserver_port)
    site.proxies.append(proxy)
    kubeconfig = site.kubeconfig_via(proxy)
    env = {"WANDB_API_KEY": site.emu.key, "WANDB_BASE_URL": site.emu.url, "WANDB_RELEASE_NAME": site.release,
           "LAUNCH_AGENT_NAMESPACE": site.agent_ns,
           "LAUNCH_AGENT_TARGET_NAMESPACES": f"{site.agent_ns},{site.jobs_ns}", "LAUNCH_AGENT_POLL_INTERVAL": "0.3"}
    config = site.workdir / "prep.yaml"
    config.write_text(f"entity: {site.emu.entity}\nqueues: [{q}]\nmax_jobs: 4\n")
    settings = resolve(config_path=str(config), env=env)
    log = logging.getLogger("prep-test")
    records = f"launch-agent.wandb.ai/role=launch-record,wandb.ai/agent={site.release}"

    async def one_agent(step: SlowStep, until) -> None:
        kube = Kube.connect(str(kubeconfig))
        client = GraphQLClient(settings.base_url, settings.api_key, timeout=5, mutation_timeout=30)
        agent = Agent(settings, Backend(client, settings.entity), kube, Metrics(), log, preparers=[step])
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 180
            while not await until(kube) and loop.time() < deadline:
                assert not task.done(), task
                await asyncio.sleep(0.3)
        finally:
            task.cancel()  # the process dies: nothing runs after this
            await asyncio.gather(task, return_exceptions=True)
            await agent.monitor.aclose()
            await client.aclose()
            await kube.aclose()

    first, second = SlowStep(), SlowStep()

    async def slow_in_step_and_fast_done(kube: Kube) -> bool:
        listed, _ = await kube.list(CONFIGMAPS, site.agent_ns, records)
        return bool(first.started) and bool(listed) and site.emu.item(fast_item)["state"] == "LEASED" \
            and site.job(fast["run_id"]) is not None

    asyncio.run(one_agent(first, slow_in_step_and_fast_done))
    tally.fault("the agent dies while a durable step runs")
    assert site.emu.item(slow_item)["state"] == "LEASED", "acked before the step ran"
    assert site.job(slow["run_id"]) is None

    async def slow_done(kube: Kube) -> bool:
        if second.started:
            second.release.set()
        listed, _ = await kube.list(CONFIGMAPS, site.agent_ns, records)
        return site.job(slow["run_id"]) is not None and not listed

    asyncio.run(one_agent(second, slow_done))
    assert first.started == [{}] and second.started == [{"token": "t-1"}], (first.started, second.started)
    wait_for("the slow run's Job created once", lambda: site.job(slow["run_id"]))
    check_runs(site, tally, {slow_item: (FINISHED, slow), fast_item: (FINISHED, fast)})
