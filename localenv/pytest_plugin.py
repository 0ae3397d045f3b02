"""pytest fixtures for tests that need a Kubernetes API server.

The session fixture ``kube`` starts a localenv in a temporary state directory and tears it
down at the end of the session — or, when ``--kubeconfig PATH`` (or ``$KUBECONFIG``, with
``--use-kubeconfig-env``) is given, uses that cluster as it is, so the same tests run against
kind or a real cluster. If the control plane cannot start, every test using it errors: it is
never skipped.

Fixtures:
``kube``            the session's :class:`Kube` (kubeconfig path, ``kubectl()``, ``helm()``,
                    ``sa_kubeconfig()``, ``apply()``, ``get()``)
``namespace``       a factory: ``namespace()`` / ``namespace(labels={...})`` creates a fresh
                    namespace (ServiceAccount ``default`` present) and deletes it afterwards
``kube_cluster``    a pytest-helm-charts style object (``kube_config_path``, ``kubectl``) for
                    tests written for that plugin
``real_node``       the real kubelet node (:class:`localenv.node.RealNode`) attached to the
                    session's localenv: ``place(pod_spec)``, ``load(archive)``, ``pod_url(url)``,
                    ``host_ip``. Only tests that ask for it take the machine's real-node lock; the
                    plugin runs the modules that use it last, WAITS for the lock when another
                    session has the node (a progress line every 30 s, ``--real-node-wait``), and
                    takes the node down right after the last test that uses it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from localenv import cluster, kubeconfig, tools


class CommandError(AssertionError):
    """kubectl or helm failed; the message carries the command and its stderr."""


@dataclass
class Kube:
    """A cluster the tests talk to (a localenv of this session, or an existing one)."""

    kubeconfig: Path
    bin_dir: Path
    helm_home: Path
    workdir: Path
    state: cluster.State | None = None
    _minted: int = field(default=0, repr=False)

    @property
    def kubectl_bin(self) -> Path:
        return self.bin_dir / "kubectl"

    def env(self, kubeconfig_path: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig_path or self.kubeconfig)
        env["HELM_CACHE_HOME"] = str(self.helm_home / "cache")
        env["HELM_CONFIG_HOME"] = str(self.helm_home / "config")
        env["HELM_DATA_HOME"] = str(self.helm_home / "data")
        return env

    def _run(self, argv: list[str], check: bool, input_text: str | None, timeout: float,
             kubeconfig_path: Path | None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=timeout,
                              env=self.env(kubeconfig_path), check=False)
        if check and proc.returncode != 0:
            raise CommandError(f"{Path(argv[0]).name} {' '.join(argv[1:])} exited {proc.returncode}:\n"
                               f"{proc.stderr.strip()}\n{proc.stdout.strip()[-2000:]}")
        return proc

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None, timeout: float = 180,
                kubeconfig_path: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster (as admin unless *kubeconfig_path*)."""
        return self._run([str(self.kubectl_bin), *args], check, input_text, timeout, kubeconfig_path)

    def helm(self, *args: str, check: bool = True, timeout: float = 300,
             kubeconfig_path: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm (private HELM_*_HOME) against this cluster."""
        from localenv import helm as helm_cli

        return self._run([str(helm_cli.binary()), *args], check, None, timeout, kubeconfig_path)

    def apply(self, objects: list[dict] | dict, namespace: str | None = None) -> None:
        docs = objects if isinstance(objects, list) else [objects]
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input_text=yaml.safe_dump_all(docs))

    def get(self, kind: str, name: str | None = None, namespace: str | None = None,
            selector: str | None = None) -> Any:
        """``kubectl get -o json`` parsed (a list's ``items`` when *name* is None)."""
        args = ["get", kind] + ([name] if name else []) + ["-o", "json"]
        if namespace:
            args += ["-n", namespace]
        if selector:
            args += ["-l", selector]
        data = json.loads(self.kubectl(*args).stdout)
        return data if name else data["items"]

    def sa_kubeconfig(self, namespace: str, service_account: str, duration: str = "2h") -> Path:
        """A kubeconfig holding only a fresh TokenRequest token of the ServiceAccount."""
        self._minted += 1
        out = self.workdir / "sa-kubeconfigs" / f"{namespace}.{service_account}.{self._minted}.kubeconfig"
        return kubeconfig.mint_service_account(self.kubectl_bin, self.kubeconfig, namespace, service_account,
                                               out, duration=duration)

    def can_i(self, kubeconfig_path: Path, verb: str, resource: str, namespace: str | None = None,
              subresource: str | None = None) -> bool:
        """``kubectl auth can-i`` with the given identity (the real authorizer decides)."""
        args = ["auth", "can-i", verb, resource]
        args += ["-n", namespace] if namespace else ["--all-namespaces"]
        if subresource:
            args += [f"--subresource={subresource}"]
        proc = self.kubectl(*args, check=False, kubeconfig_path=kubeconfig_path)
        answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if answer not in ("yes", "no"):
            raise CommandError(f"kubectl auth can-i {verb} {resource}: {proc.stderr.strip()}")
        return answer == "yes"

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 120, interval: float = 0.5) -> None:
        """Poll *check* until true; fail the test with *what* after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> str:
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = dict(labels)
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
        self.wait_for(f"ServiceAccount default in {name}",
                      lambda: self.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0)
        return name


HELM_CHARTS_PLUGIN = "helm-charts"


def _kubeconfig_option(group: pytest.OptionGroup, pluginmanager: pytest.PytestPluginManager) -> None:
    """``--kubeconfig`` has one definition, read by this plugin and by pytest-helm-charts alike.
    It is pytest-helm-charts' own option when that plugin is installed (its documented way of
    pointing chart tests at kind); when this plugin loads first (``-p localenv.pytest_plugin``),
    pytest-helm-charts is loaded now, before it would fail on a second ``--kubeconfig``. Without
    it (not installed, or ``-p no:helm-charts``) the option is defined here, with the same dest."""
    if pluginmanager.has_plugin(HELM_CHARTS_PLUGIN):
        return
    if not pluginmanager.is_blocked(HELM_CHARTS_PLUGIN):
        try:
            helm_charts = importlib.import_module("pytest_helm_charts.plugin")
        except ImportError:
            pass
        else:
            pluginmanager.register(helm_charts, HELM_CHARTS_PLUGIN)
            return
    group.addoption("--kubeconfig", action="store", dest="kubeconfig", default=None,
                    help="run cluster tests against this kubeconfig instead of starting a localenv")


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    group = parser.getgroup("localenv", "local Kubernetes control plane")
    _kubeconfig_option(group, pluginmanager)
    group.addoption("--use-kubeconfig-env", action="store_true", default=False,
                    help="use $KUBECONFIG (when set) instead of starting a localenv")
    group.addoption("--localenv-nodes", action="store", type=int, default=2,
                    help="number of fake nodes of the session's localenv (default 2)")
    group.addoption("--localenv-keep", action="store_true", default=False,
                    help="leave the session's localenv running at the end (prints its state dir)")
    group.addoption("--real-node-wait", action="store", type=float, default=3600.0,
                    help="seconds to wait for the machine's real node when another session has it (default 3600)")


def _live_log(config: pytest.Config, prefix: str) -> Callable[[str], None]:
    """A progress line on the terminal right away, even while output is being captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def log(line: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(f"{prefix} {line}")

    return log


REAL_NODE_FIXTURE = "real_node"
_USERS = pytest.StashKey[set]()
_HOLDER = pytest.StashKey[list]()


def _uses_real_node(item: pytest.Item) -> bool:
    return REAL_NODE_FIXTURE in getattr(item, "fixturenames", ())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_node: uses the machine's real node (set on every test that asks "
                                       "for the real_node fixture; `-m 'not real_node'` leaves them out)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that use the real node and run their modules last (in their own order), so
    the machine's lock is held only while they run."""
    for item in items:
        if _uses_real_node(item):
            item.add_marker(pytest.mark.real_node)
    users = {item.nodeid for item in items if _uses_real_node(item)}
    if not users:
        return
    modules = {item.nodeid.split("::", 1)[0] for item in items if item.nodeid in users}
    items[:] = ([i for i in items if i.nodeid.split("::", 1)[0] not in modules]
                + [i for i in items if i.nodeid.split("::", 1)[0] in modules])


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_USERS] = {item.nodeid for item in session.items if _uses_real_node(item)}
    session.config.stash[_HOLDER] = []


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    users = item.config.stash.get(_USERS, set())
    if item.nodeid in users:
        users.discard(item.nodeid)
        if not users:
            _stop_real_node(item.config)


def _stop_real_node(config: pytest.Config) -> None:
    holder = config.stash.get(_HOLDER, [])
    while holder:
        node = holder.pop()
        node.stop()


def _existing_kubeconfig(config: pytest.Config) -> Path | None:
    given = config.getoption("kubeconfig", default=None)
    if not given and config.getoption("--use-kubeconfig-env") and os.environ.get("KUBECONFIG"):
        given = os.environ["KUBECONFIG"]
    return Path(given).expanduser().resolve() if given else None


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """The session's Kubernetes cluster (starts a localenv unless one is given)."""
    workdir = tmp_path_factory.mktemp("kube")
    helm_home = workdir / "helm-home"
    helm_home.mkdir()
    bin_dir = tools.bin_dir()
    existing = _existing_kubeconfig(request.config)
    if existing is not None:
        yield Kube(existing, bin_dir, helm_home, workdir)
        return
    # A short path: state lives outside pytest's deep temp tree, cleaned by down().
    state_dir = Path(tempfile.mkdtemp(prefix="localenv-"))
    keep = request.config.getoption("--localenv-keep")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def log(line: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[localenv] {line}")

    try:
        state = cluster.up(state_dir, nodes=request.config.getoption("--localenv-nodes"), bin_dir=bin_dir,
                           log=log, with_emulator=False, tie_to_parent=not keep)
    except cluster.LocalenvError as exc:
        pytest.fail(f"the local control plane did not start: {exc}", pytrace=False)
    log(f"ready in {state.ready_seconds:.1f} s ({state_dir})")
    try:
        yield Kube(Path(state.kubeconfig), bin_dir, helm_home, workdir, state=state)
    finally:
        if keep:
            log(f"left running: python -m localenv down --state-dir {state_dir}")
        else:
            cluster.down(state_dir)


@pytest.fixture(scope="session")
def real_node(request: pytest.FixtureRequest, kube: Kube) -> Iterator[Any]:
    """The machine's real node, attached to the session's localenv (waiting for its lock)."""
    from localenv import node as realnode

    if kube.state is None:
        pytest.skip("the real node belongs to localenv; this session runs against an existing cluster "
                    "(--kubeconfig), where every node is real")
    log = _live_log(request.config, "[localenv real node]")
    try:
        handle = realnode.start(kube.state, wait=request.config.getoption("--real-node-wait"), log=log,
                                tie_to_parent=True)
    except (cluster.LocalenvError, realnode.lock.NodeBusy) as exc:
        pytest.fail(f"the real node did not start: {exc}", pytrace=False)
    log(f"{handle.name} ready in {handle.node.ready_seconds:.1f} s at {handle.host_ip}")
    holder = request.config.stash[_HOLDER]
    holder.append(handle)
    try:
        yield handle
    finally:
        _stop_real_node(request.config)


class NodeImages:
    """Images built locally (cached by content hash) and loaded into the real node on first use:
    ``busybox``, ``python`` (the mmdebstrap base), ``agent`` (agent/Dockerfile), ``trainer``
    (tests/images/trainer); each attribute is the reference to put in a pod spec."""

    def __init__(self, node: Any, log: Callable[[str], None]) -> None:
        self._node, self._log, self._refs = node, log, {}

    def _get(self, name: str) -> str:
        if name not in self._refs:
            from localenv import images
            from localenv.images import project

            build = {"busybox": images.busybox, "python": images.python_base, "agent": project.agent,
                     "trainer": project.trainer}[name]
            self._refs[name] = self._node.load(build(log=self._log), log=self._log)[0]
        return self._refs[name]

    busybox = property(lambda self: self._get("busybox"))
    python = property(lambda self: self._get("python"))
    agent = property(lambda self: self._get("agent"))
    trainer = property(lambda self: self._get("trainer"))


@pytest.fixture(scope="session")
def node_images(request: pytest.FixtureRequest, real_node: Any) -> NodeImages:
    """The local images, loaded into the real node as tests ask for them."""
    return NodeImages(real_node, _live_log(request.config, "[localenv images]"))


@pytest.fixture
def namespace(kube: Kube) -> Iterator[Callable[..., str]]:
    """Factory of fresh namespaces, deleted (without waiting) after the test."""
    made: list[str] = []

    def make(prefix: str = "t", labels: Mapping[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        kube.create_namespace(name, labels)
        made.append(name)
        return name

    yield make
    for name in made:
        kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@dataclass
class HelmChartsCluster:
    """The part of pytest-helm-charts' ``kube_cluster`` that works without its package."""

    kube_config_path: str
    kube: Kube

    def kubectl(self, subcmd_str: str, output_format: str = "json", namespace: str = "default",
                **kwargs: Any) -> Any:
        args = [*subcmd_str.split(), "-n", namespace]
        if output_format:
            args += ["-o", output_format]
        out = self.kube.kubectl(*args).stdout
        return json.loads(out) if output_format == "json" and out.strip() else out


@pytest.fixture(scope="session")
def kube_cluster(kube: Kube) -> HelmChartsCluster:
    """pytest-helm-charts compatible handle on the session's cluster."""
    return HelmChartsCluster(str(kube.kubeconfig), kube)
