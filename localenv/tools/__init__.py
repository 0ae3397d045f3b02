"""Pinned Go builds of the Kubernetes tools localenv runs.

Each subdirectory (``kubernetes``, ``etcd``, ``helm``, ``kwok``) is a tiny Go module whose
``go.mod``/``go.sum`` pin one upstream release; ``tools.go`` imports the main packages so
``go mod tidy`` keeps them (``coredns`` and ``pause`` hold a short ``main.go`` of their own
instead). The binaries are built with the local Go toolchain into
``<cache>/localenv/<pin-hash>/bin`` and rebuilt only when a pin (or the Go version) changes.
A tool's binaries come from one ``go build`` (the six Kubernetes binaries share their
packages); the tools of a set build two at a time.

A second set, ``images`` (the Kaniko executor, the CNCF distribution registry and
fake-gcs-server, one module so their common dependencies build once), has its own hash and
cache directory ``<cache>/images/<pin-hash>/bin``: a change to one set never rebuilds the other.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
MIN_GO = (1, 26)
HEARTBEAT_SECONDS = 30.0


class BuildError(RuntimeError):
    """A tool could not be built; the message is one line meant for the user."""


@dataclass(frozen=True)
class Binary:
    name: str
    package: str
    version_module: str = ""
    ldflags: tuple[str, ...] = ()
    static: bool = False  # CGO_ENABLED=0: runs in an empty root (a container image of one file)


@dataclass(frozen=True)
class Tool:
    """One Go module directory under localenv/tools and the binaries built from it."""

    name: str
    binaries: tuple[Binary, ...]

    @property
    def module_dir(self) -> Path:
        return TOOLS_DIR / self.name


def _kube_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (
        f"-X {pkg}.gitVersion={version}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
        f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
    )


KUBE = "k8s.io/kubernetes"
TOOLS: tuple[Tool, ...] = (
    Tool("etcd", (Binary("etcd", "go.etcd.io/etcd/server/v3"),)),
    Tool(
        "kubernetes",
        tuple(
            Binary(name, f"{KUBE}/cmd/{name}", version_module=KUBE)
            for name in (
                "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy",
            )
        ),
    ),
    Tool("helm", (Binary("helm", "helm.sh/helm/v3/cmd/helm", version_module="helm.sh/helm/v3"),)),
    Tool("kwok", (Binary("kwok", "sigs.k8s.io/kwok/cmd/kwok"),)),
    Tool("coredns", (Binary("coredns", "launch-agent.local/localenv/tools/coredns"),)),
    Tool("pause", (Binary("pause", "launch-agent.local/localenv/tools/pause", static=True),)),
)
BINARIES: tuple[str, ...] = tuple(b.name for t in TOOLS for b in t.binaries)
KANIKO = "github.com/GoogleContainerTools/kaniko"
IMAGE_TOOLS: tuple[Tool, ...] = (
    Tool("images", (
        Binary("executor", f"{KANIKO}/cmd/executor", version_module=KANIKO, static=True),
        Binary("registry", "github.com/distribution/distribution/v3/cmd/registry", static=True),
        Binary("fake-gcs-server", "github.com/fsouza/fake-gcs-server", static=True),
    )),
)


@dataclass(frozen=True)
class ToolSet:
    """Tools built and cached together: ``<cache>/<name>/<pin-hash>/bin``."""

    name: str
    tools: tuple[Tool, ...]

    @property
    def binaries(self) -> tuple[str, ...]:
        return tuple(b.name for t in self.tools for b in t.binaries)


KUBE_SCORE = "github.com/zegl/kube-score"
# Static checkers of rendered manifests.
LINT_TOOLS: tuple[Tool, ...] = (
    Tool("kube-score", (Binary("kube-score", f"{KUBE_SCORE}/cmd/kube-score", version_module=KUBE_SCORE),)),
)
KUBE_SET = ToolSet("localenv", TOOLS)
IMAGE_SET = ToolSet("images", IMAGE_TOOLS)
LINT_SET = ToolSet("lint", LINT_TOOLS)
TOOL_SETS: tuple[ToolSet, ...] = (KUBE_SET, IMAGE_SET, LINT_SET)


def cache_root() -> Path:
    """Root of the launch-agent cache (``LAUNCH_AGENT_CACHE`` or ``~/.cache/launch-agent``)."""
    override = os.environ.get("LAUNCH_AGENT_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "launch-agent"


def required_version(module_dir: Path, module: str) -> str:
    """The version ``go.mod`` in *module_dir* requires for *module* (replace lines ignored)."""
    text = (module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
    if not match:
        raise BuildError(f"{module_dir / 'go.mod'}: no require line for {module}")
    return match.group(1)


def ldflags_for(tool: Tool, binary: Binary) -> str:
    flags = ["-s", "-w"]
    if binary.version_module == KUBE:
        flags += _kube_ldflags(required_version(tool.module_dir, KUBE))
    elif binary.version_module == KUBE_SCORE:
        flags.append(f"-X main.version={required_version(tool.module_dir, KUBE_SCORE)}")
    elif binary.version_module == KANIKO:
        flags.append(f"-X {KANIKO}/pkg/version.version={required_version(tool.module_dir, KANIKO)}")
    elif binary.version_module == "helm.sh/helm/v3":
        version = required_version(tool.module_dir, binary.version_module)
        flags.append(f"-X helm.sh/helm/v3/internal/version.version={version}")
        # Like a release build: the default KubeVersion of `helm template`/`lint` follows the
        # client-go helm is built with (v0.X -> 1.X) instead of the source's fallback.
        client_go = required_version(tool.module_dir, "k8s.io/client-go").lstrip("v").split(".")
        major, minor = str(int(client_go[0]) + 1), client_go[1]
        for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
            flags += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    flags += binary.ldflags
    return " ".join(flags)


def find_go(candidates: list[str] | None = None) -> Path:
    """The ``go`` command: ``$GO``, then PATH, then /usr/local/go/bin/go."""
    if candidates is None:
        candidates = [os.environ.get("GO", ""), shutil.which("go") or "", "/usr/local/go/bin/go"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise BuildError(
        "the Go toolchain was not found (set GO or put `go` >= "
        f"{MIN_GO[0]}.{MIN_GO[1]} on PATH); it is needed once to build the localenv tools"
    )


def go_env(go: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-mod=readonly"
    env["PATH"] = f"{go.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def go_version(go: Path) -> str:
    out = subprocess.run(
        [str(go), "env", "GOVERSION"], capture_output=True, text=True, env=go_env(go), check=False
    )
    version = out.stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", version)
    if out.returncode != 0 or not match:
        raise BuildError(f"`{go} env GOVERSION` failed: {(out.stderr or out.stdout).strip()[:200]}")
    if (int(match.group(1)), int(match.group(2))) < MIN_GO:
        raise BuildError(f"{go} is {version}; the localenv tools need Go >= {MIN_GO[0]}.{MIN_GO[1]}")
    return version


def pin_hash(go_version_text: str, tool_set: ToolSet | None = None) -> str:
    """Hash of every pin: go.mod, go.sum and tools.go of each tool, the binaries, the Go version."""
    digest = hashlib.sha256()
    digest.update(go_version_text.encode())
    for tool in (tool_set or KUBE_SET).tools:
        for path in _pinned_files(tool):
            digest.update(f"\0{tool.name}/{path.name}\0".encode())
            digest.update(path.read_bytes())
        for binary in tool.binaries:
            static = ";static" if binary.static else ""
            digest.update(f"\0{binary.name}={binary.package};{ldflags_for(tool, binary)}{static}".encode())
    return digest.hexdigest()[:16]


def _pinned_files(tool: Tool) -> list[Path]:
    return [tool.module_dir / "go.mod", tool.module_dir / "go.sum", *sorted(tool.module_dir.glob("*.go"))]


def _default_log(line: str) -> None:
    print(f"[localenv build] {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _explain_failure(tool: Tool, log_path: Path) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    download = re.compile(r"(dial tcp|proxy\.golang|reading https?://|i/o timeout|no such host|"
                          r"connection refused|TLS handshake|410 Gone|404 Not Found|verifying .*: |module lookup disabled)")
    for line in lines:
        if download.search(line):
            return f"module download failed while building {tool.name}: {line.strip()[:240]} (log: {log_path})"
    for line in lines:
        if "requires go >=" in line or "go.mod requires go" in line:
            return f"{tool.name}: {line.strip()[:240]}"
    last = lines[-1].strip()[:240] if lines else "no output"
    return f"building {tool.name} failed: {last} (full log: {log_path})"


def _run_go_build(
    go: Path, tool: Tool, binaries: tuple[Binary, ...], out_dir: Path, log_path: Path, log: Callable[[str], None]
) -> None:
    """One ``go build`` for *binaries* of *tool* (they share link flags) into *out_dir*."""
    first = binaries[0]
    target = str(out_dir / first.name) if len(binaries) == 1 else f"{out_dir}{os.sep}"
    cmd = [str(go), "build", "-ldflags", ldflags_for(tool, first), "-o", target, *(b.package for b in binaries)]
    env = go_env(go)
    if first.static:
        env["CGO_ENABLED"] = "0"
    names = ", ".join(b.name for b in binaries)
    start = time.monotonic()
    next_beat = start + HEARTBEAT_SECONDS
    with log_path.open("a") as log_file:
        log_file.write(f"$ {' '.join(cmd)}\n")
        log_file.flush()
        proc = subprocess.Popen(
            cmd, cwd=tool.module_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if time.monotonic() >= next_beat:
                    log(f"  {names}: still building ({time.monotonic() - start:.0f} s)")
                    next_beat += HEARTBEAT_SECONDS
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        raise BuildError(_explain_failure(tool, log_path))


def _build_tool(go: Path, tool: Tool, staging: Path, root: Path, log: Callable[[str], None]) -> None:
    t0 = time.monotonic()
    log_path = root / f"build-{tool.name}.log"
    log_path.write_text("")
    log(f"{tool.name}: {', '.join(b.name for b in tool.binaries)} ...")
    groups: dict[tuple[str, bool], list[Binary]] = {}
    for binary in tool.binaries:
        groups.setdefault((ldflags_for(tool, binary), binary.static), []).append(binary)
    for group in groups.values():
        _run_go_build(go, tool, tuple(group), staging, log_path, log)
    log(f"{tool.name}: done in {time.monotonic() - t0:.0f} s")


PARALLEL_BUILDS = 2  # tools of one set building at once


def build(force: bool = False, log: Callable[[str], None] = _default_log,
          tool_set: ToolSet | None = None) -> Path:
    """Build every pinned tool of the set (default: the Kubernetes tools) if needed; return its bin directory."""
    tool_set = tool_set or KUBE_SET
    go = find_go()
    version = go_version(go)
    root = cache_root() / tool_set.name / pin_hash(version, tool_set)
    bin_path = root / "bin"
    if not force and _complete(bin_path, tool_set):
        return bin_path
    with _locked(root / ".build.lock"):
        if not force and _complete(bin_path, tool_set):
            return bin_path
        staging = root / f"bin.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        log(f"building {len(tool_set.binaries)} tools with {version} into {bin_path} (logs: {root}/build-*.log)")
        total = time.monotonic()
        # The largest first, so the small ones fill the other slot while it builds.
        order = sorted(tool_set.tools, key=lambda tl: -len(tl.binaries))
        try:
            with concurrent.futures.ThreadPoolExecutor(PARALLEL_BUILDS) as pool:
                futures = [pool.submit(_build_tool, go, tool, staging, root, log) for tool in order]
                for future in futures:
                    future.result()
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if bin_path.exists():
            shutil.rmtree(bin_path)
        staging.rename(bin_path)
        log(f"all tools built in {time.monotonic() - total:.0f} s")
    return bin_path


def _complete(bin_path: Path, tool_set: ToolSet | None = None) -> bool:
    return all((bin_path / name).is_file() for name in (tool_set or KUBE_SET).binaries)


def bin_dir(tool_set: ToolSet | None = None) -> Path:
    """Directory holding the pinned binaries of the set, building them first if needed."""
    return build(tool_set=tool_set)


def binary(name: str) -> Path:
    """Path of one pinned binary (``kube-apiserver``, ``etcd``, ``helm``, ``kwok``, ``executor``, ...)."""
    for tool_set in TOOL_SETS:
        if name in tool_set.binaries:
            return bin_dir(tool_set) / name
    known = ", ".join(n for ts in TOOL_SETS for n in ts.binaries)
    raise KeyError(f"unknown localenv tool {name!r}; known: {known}")
