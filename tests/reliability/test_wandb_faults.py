"""W&B failing under a running agent: 500/502/503 answers, requests that time out, answers slower
than the liveness window, connections dropped for a while, answers lost after the work was done.
The agent backs off (bounded, with jitter), is never restarted by its probe, doubles nothing."""

from __future__ import annotations

import itertools
import threading
import time

from harness import FAILED, FINISHED, OUTCOME, RUN_SECONDS, check_runs, run_spec, wait_for

LIVENESS_WINDOW = 30.0  # the chart's probe: every 10 s, 3 failures


class Prober:
    """Polls /healthz like the kubelet and remembers every failure."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self.failures: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.checks += 1
            try:
                code = self.agent.healthz()
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if code != 200:
                self.failures.append(f"HTTP {code}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def pops(site) -> list[float]:
    return [e["time"] for e in site.emu.requests("popFromRunQueue")]


def test_wandb_errors_timeouts_slowness_and_drops(site, tally):
    q = site.queue("wb", annotations={RUN_SECONDS: "1"})
    bad = site.queue("wbbad", annotations={RUN_SECONDS: "1", OUTCOME: "fail"})
    agent = site.agent([q, bad])
    prober = Prober(agent)
    specs: dict[str, tuple[str, dict]] = {}

    def push(queue: str, name: str, outcome: str) -> str:
        spec = run_spec(f"{name}-{site.release}")
        item = site.emu.enqueue(queue, spec)
        specs[item] = (outcome, spec)
        return item

    try:
        wait_for("the agent polling", lambda: pops(site), agents=[agent])
        # 1. 500/502/503 on every operation for a while.
        for status in (500, 502, 503):
            site.emu.add_fault("*", "status", status=status, times=15)
            tally.fault(f"W&B answers {status} (15 requests)")
        push(q, "e1", FINISHED)
        push(bad, "e2", FAILED)
        wait_for("runs through the errors", lambda: all(site.emu.item(i)["state"] in ("LEASED", "FAILED")
                                                         for i in specs), timeout=240, agents=[agent])
        # 2. Dropped connections for a while (before the work is done), then lost answers (after).
        site.emu.add_fault("*", "drop", times=20)
        tally.fault("W&B drops connections (20 requests)")
        push(bad, "d1", FAILED)
        wait_for("the drops used up", lambda: not [r for r in site.emu.admin("GET", "/faults")
                                                    if r["kind"] == "drop" and r["fired"] < r["times"]],
                 timeout=240, agents=[agent])
        for op in ("popFromRunQueue", "ackRunQueueItem", "failRunQueueItem", "LaunchAgent"):
            site.emu.add_fault(op, "lose_response", times=1)
            tally.fault(f"the answer to {op} lost after W&B applied it")
        push(bad, "l1", FAILED)
        push(q, "l2", FINISHED)
        # 3. Slower than the liveness window, and slower than the client's timeout.
        site.emu.add_fault("*", "latency", seconds=LIVENESS_WINDOW + 5, times=4)
        tally.fault("W&B answers slower than the liveness window (4 requests)")
        push(q, "s1", FINISHED)
        site.emu.add_fault("LaunchAgent", "latency", seconds=8, times=3)
        site.emu.add_fault("RunStoppedStatus", "latency", seconds=8, times=3)
        tally.fault("queries time out (6 requests)", 6)
        push(bad, "s2", FAILED)
        wait_for("every run ended and reported", lambda: all(
            site.emu.item(i)["state"] == ("FAILED" if o == FAILED else "LEASED") for i, (o, _) in specs.items()),
            timeout=300, agents=[agent])
    finally:
        prober.stop()
    assert agent.alive()
    assert not prober.failures, f"the liveness probe failed {len(prober.failures)}x: {prober.failures[:5]}"
    tally.extra["probe checks"] = prober.checks
    # Bounded backoff: polling never stopped for long and never hammered W&B.
    times = pops(site)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    tally.extra["longest pause between pops (s)"] = round(max(gaps), 1)
    assert max(gaps) < 3 * (LIVENESS_WINDOW + 5), f"polling paused {max(gaps):.0f}s"
    per_second = len(times) / max(1.0, times[-1] - times[0])
    assert per_second < 20, f"{per_second:.1f} pops per second"
    check_runs(site, tally, specs)


def test_sigterm_while_wandb_hangs_exits_cleanly(site, tally):
    q = site.queue("term", annotations={RUN_SECONDS: "1"})
    agent = site.agent([q])
    wait_for("the agent polling", lambda: pops(site), agents=[agent])
    site.emu.add_fault("*", "latency", seconds=300, times=6)
    tally.fault("SIGTERM while every W&B call hangs")
    time.sleep(2)
    started = time.monotonic()
    # Within the pod's termination grace period (30 s by default) plus slack, however long W&B hangs.
    code = agent.terminate(timeout=60)
    tally.extra["SIGTERM to exit (s)"] = round(time.monotonic() - started, 1)
    assert code == 0, agent.current()[-2000:]
    assert "Traceback" not in agent.current()


def test_sigterm_during_registration_exits_0(site, tally):
    q = site.queue("reg")
    site.emu.add_fault("ProjectRunQueues", "latency", seconds=40, times=1)
    tally.fault("SIGTERM while registration waits on W&B")
    agent = site.agent([q])
    wait_for("registration under way", lambda: "health endpoints" in agent.current(), agents=[agent])
    time.sleep(1)
    assert agent.terminate(timeout=60) == 0, agent.current()[-2000:]
    assert "registered as launch agent" not in agent.current() and "Traceback" not in agent.current()
