"""Fixtures of the fault suite: one localenv for the whole suite (its own, because tests restart
its API server and etcd), the W&B emulator, a fresh install per test, and the figures each test
proves, written as `reliability` to `localenv.results` (`$LAUNCH_AGENT_RESULTS_DIR`, default
`build/results/`) for `make reliability`."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from harness import AUDIT_POLICY, ENTITY, Env, Site, Tally, make_site

from localenv import cluster, results, tools
from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.testing import EntityAdmin

_TALLIES: list[Tally] = []
_OUTCOMES: dict[str, bool] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def env() -> Iterator[Env]:
    state_dir = Path(tempfile.mkdtemp(prefix="localenv-rel-"))
    policy = state_dir.parent / f"{state_dir.name}-audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    try:
        state = cluster.up(state_dir, nodes=2, bin_dir=tools.bin_dir(), with_emulator=False, tie_to_parent=True,
                           log=lambda _line: None, apiserver_args=[
                               "--watch-cache=false", f"--audit-policy-file={policy}",
                               f"--audit-log-path={state_dir / 'audit.log'}", "--audit-log-format=json"])
    except cluster.LocalenvError as exc:
        pytest.fail(f"the local control plane did not start: {exc}", pytrace=False)
    server, key = start_emulator(entity=ENTITY, username=ENTITY)
    server.emulator.state.claim_timeout = 6.0
    emu = EntityAdmin(server.url, key, ENTITY)
    rig = Env(state, emu, server.stop, state_dir)
    try:
        yield rig
    finally:
        rig.close()
        cluster.down(state_dir)
        policy.unlink(missing_ok=True)


@pytest.fixture
def site(env: Env, tmp_path: Path, secret_scan) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    env.emu.clear_faults()
    env.emu.clear_requests()
    s = make_site(env, tmp_path)
    try:
        yield s
    finally:
        env.emu.clear_faults()
        s.close()
        # The key never leaves its Secret, whatever the faults: agent output (tracebacks included),
        # what the emulator was sent, every object left in the install's namespaces.
        scan = secret_scan(env.emu.key)
        for proc in s.procs:
            scan.text(proc.log.name, proc.text())
        scan.objects("emulator requests", env.emu.admin("GET", "/requests") or [])
        admin = SimpleNamespace(kubectl=lambda *args, check=True, **_: cluster.kubectl(
            env.bin_dir, env.kubeconfig, *args, check=check))
        scan.cluster(admin, [s.agent_ns, s.jobs_ns], holders=[f"wandb-api-key-{s.release}"])


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    t = Tally(request.node.name)
    yield t
    _TALLIES.append(t)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.failed):
        _OUTCOMES[item.name] = report.passed


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _TALLIES:
        return
    tests = []
    for t in _TALLIES:
        passed = _OUTCOMES.get(t.test, False)
        tests.append({"test": t.test, "passed": passed, "faults": t.faults, "runs": t.runs, "launched": t.launched,
                      "launched_once": t.launched_once, "lost": t.lost,
                      "duplicates": t.duplicates, "double_reports": t.double_reports, "notes": t.notes, **t.extra})
    figures = {
        "fault tests": len(tests),
        "faults injected": sum(t["faults"] for t in tests),
        "faults survived": sum(t["faults"] for t in tests if t["passed"]),
        "runs": sum(t["runs"] for t in tests),
        "runs launched exactly once": f"{sum(t['launched_once'] for t in tests)}/"
                                      f"{sum(t['launched'] for t in tests)}",
        "runs lost": sum(t["lost"] for t in tests),
        "duplicate workloads": sum(t["duplicates"] for t in tests),
        "double reports": sum(t["double_reports"] for t in tests),
        "fault tests passed": f"{sum(t['passed'] for t in tests)}/{len(tests)}",
    }
    results.write("reliability", {"figures": figures, "tests": tests})
