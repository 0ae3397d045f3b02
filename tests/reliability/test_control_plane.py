"""The Kubernetes side failing under a running agent: the API server restarted, etcd restarted,
every watch connection reset, and a watch that resumes from history etcd no longer has (410)."""

from __future__ import annotations

from harness import FAILED, FINISHED, OUTCOME, RUN_SECONDS, check_runs, condition, run_spec, wait_for


def test_api_server_and_etcd_restarted_mid_run(site, tally):
    q = site.queue("cp", annotations={RUN_SECONDS: "8"})
    bad = site.queue("cpbad", annotations={RUN_SECONDS: "8", OUTCOME: "fail"})
    specs = {site.emu.enqueue(q, s := run_spec(f"cp1-{site.release}")): (FINISHED, s),
             site.emu.enqueue(bad, s2 := run_spec(f"cp2-{site.release}")): (FAILED, s2)}
    agent = site.agent([q, bad])
    wait_for("both runs acked", lambda: all(site.emu.item(i)["state"] == "LEASED" for i in specs), agents=[agent])
    site.env.restart("kube-apiserver", down_for=2)
    tally.fault("kube-apiserver restarted mid-run")
    # More work arrives while the control plane comes back.
    late = run_spec(f"cp3-{site.release}")
    specs[site.emu.enqueue(q, late)] = (FINISHED, late)
    site.env.restart("etcd", down_for=2)
    tally.fault("etcd restarted mid-run")
    wait_for("every run ended and reported", lambda: site.emu.item(next(iter(
        i for i, (o, _) in specs.items() if o == FAILED)))["state"] == "FAILED"
        and all(condition(site.job(s["run_id"]), "Complete") or site.job(s["run_id"]) is None
                for o, s in specs.values() if o == FINISHED), timeout=240, agents=[agent])
    assert agent.alive() and agent.healthz() == 200
    check_runs(site, tally, specs)


def test_watch_connections_reset_and_410_on_resume(site, tally):
    q = site.queue("watch", annotations={RUN_SECONDS: "6", OUTCOME: "fail"})
    first = run_spec(f"w1-{site.release}")
    specs = {site.emu.enqueue(q, first): (FAILED, first)}
    agent = site.agent([q])
    wait_for("the run acked", lambda: all(site.emu.item(i)["state"] == "LEASED" for i in specs), agents=[agent])
    for _ in range(3):
        agent.proxy.reset()
        tally.fault("every connection of the agent reset")
    # Changes the agent misses, then history compacted away: its watches resume from a
    # resourceVersion etcd no longer has and must re-list.
    agent.proxy.blackhole()
    second = run_spec(f"w2-{site.release}")
    specs[site.emu.enqueue(q, second)] = (FAILED, second)
    wait_for("the first Job failed", lambda: condition(site.job(first["run_id"]), "Failed"))
    site.env.compact_etcd()
    agent.proxy.restore()
    tally.fault("410 Gone on resume (etcd compacted under the watch)")
    wait_for("both failures reported", lambda: all(site.emu.item(i)["state"] == "FAILED" for i in specs),
             timeout=240, agents=[agent])
    wait_for("the re-list logged", lambda: "expired (410), re-listing" in agent.current()
             or "re-listing" in agent.current(), timeout=60, agents=[agent])
    check_runs(site, tally, specs)
