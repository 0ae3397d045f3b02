"""``python -m localenv {build,install-packages,images,up,down,status,env,emulator}``."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shlex
import sys
import time
from pathlib import Path

from localenv import cluster, images, tools
from localenv.buildservers.install import InstallError
from localenv.node import config as node_config
from localenv.node import host, lifecycle, lock, packages


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else cluster.default_state_dir()


def _print_env(state: cluster.State) -> None:
    for key, value in state.env().items():
        print(f"export {key}={shlex.quote(value)}")
    print(f'export PATH={shlex.quote(state.bin_dir)}:"$PATH"')


def cmd_build(args: argparse.Namespace) -> int:
    """Build every tool set, install the build servers and — where the machine can (root, the
    Debian packages) — build the local images, side by side: downloads, image builds and links
    overlap with the Go compiles."""
    from localenv.buildservers import install

    t0 = time.monotonic()
    tools.go_version(tools.find_go())  # a missing or old Go is one line, before anything starts
    with_images = not args.no_images and os.geteuid() == 0
    if with_images:
        packages.install(log=_err)
    with concurrent.futures.ThreadPoolExecutor(len(tools.TOOL_SETS) + 3) as pool:
        futures = [pool.submit(tools.build, args.force, tool_set=ts) for ts in tools.TOOL_SETS]
        futures += [pool.submit(install.moto_python), pool.submit(install.azurite_main)]
        built = pool.submit(_build_images) if with_images else None
        paths = [f.result() for f in futures]
        refs = built.result() if built else []
    for path in paths:
        print(f"localenv tools ready: {path} ({time.monotonic() - t0:.1f} s)")
    if refs:
        print(f"local images ready: {', '.join(refs)} ({time.monotonic() - t0:.1f} s)")
    elif not args.no_images:
        print("local images not built (they need root and the Debian packages of localenv/node/packages.txt)")
    return 0


def _build_images() -> list[str]:
    from localenv.images import project

    return [build().ref for build in (images.busybox, images.python_base, project.agent, project.trainer)]


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_install_packages(args: argparse.Namespace) -> int:
    done = packages.install(log=_err)
    print(f"Debian packages: {'installed ' + ' '.join(done) if done else 'all present'}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args).expanduser().resolve()
    t0 = time.monotonic()
    bins = tools.bin_dir()
    machine_lock = None
    if not args.no_real_node:
        lifecycle.check_host()
        # Refuse (or wait) before anything starts: one real node per machine.
        machine_lock = lifecycle.acquire_lock(state_dir, args.wait_real_node, _err)
    try:
        state = cluster.up(state_dir, nodes=args.nodes, bin_dir=bins, with_emulator=not args.no_emulator, log=_err)
    except BaseException:
        if machine_lock is not None:
            machine_lock.release()
        raise
    if machine_lock is not None:
        try:
            ns = lifecycle.attach(state, machine_lock, log=_err)
        except BaseException:
            cluster.down(state_dir)
            machine_lock.release()
            raise
        _err(f"real node {ns.name} at {ns.host_ip} ready in {ns.ready_seconds:.1f} s "
             f"(pods choose it with nodeSelector {node_config.LABEL}=true and its toleration)")
    print(f"localenv up in {time.monotonic() - t0:.1f} s: {state.server}, nodes {', '.join(state.nodes)}",
          file=sys.stderr)
    if state.emulator_url:
        key = state.emulator_api_key or f"(not found; see {state_dir / 'wandb-emulator.json'})"
        print(f"W&B emulator: {state.emulator_url}  API key: {key}", file=sys.stderr)
    print(f"stop it with: python -m localenv down --state-dir {shlex.quote(state.state_dir)}", file=sys.stderr)
    print("# use it from a shell:", file=sys.stderr)
    _print_env(state)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    stopped = cluster.down(state_dir)
    print(f"localenv down: stopped {', '.join(stopped) or 'nothing'}; removed {state_dir}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = cluster.status(_state_dir(args))
    print(json.dumps(info, indent=2))
    return 0 if info.get("running") and info.get("apiserver_ready") else 1


def cmd_env(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args).expanduser().resolve()
    state = cluster.State.load(state_dir)
    if state is None:
        raise cluster.LocalenvError(f"no localenv in {state_dir}; start one with `python -m localenv up`")
    _print_env(state)
    return 0


def cmd_emulator(rest: list[str]) -> int:
    """Replace this process by ``python -m localenv.wandb_emulator REST``."""
    if not cluster.emulator_available():
        print(f"localenv emulator: {cluster.EMULATOR_MODULE} is not installed in this tree yet", file=sys.stderr)
        return 2
    os.execv(sys.executable, [sys.executable, "-m", cluster.EMULATOR_MODULE, *rest])
    return 0  # not reached


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m localenv", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="build the pinned Kubernetes tools into the cache (if needed)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is complete")
    p.add_argument("--no-images", action="store_true", help="only the Go tools, not the local images")
    p.set_defaults(func=cmd_build)

    for name, func, text in (
        ("up", cmd_up, "start a local control plane (and the W&B emulator)"),
        ("down", cmd_down, "stop it and remove its state directory"),
        ("status", cmd_status, "show its processes and readiness"),
        ("env", cmd_env, "print export lines for a shell"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--state-dir", help=f"state directory (default {cluster.default_state_dir()})")
        p.set_defaults(func=func)
        if name == "up":
            p.add_argument("--nodes", type=int, default=1, help="number of fake (kwok) nodes (default 1)")
            p.add_argument("--no-emulator", action="store_true", help="do not start the W&B emulator")
            p.add_argument("--no-real-node", action="store_true",
                           help="kwok nodes only (no kubelet, containerd, bridge; needs no root)")
            p.add_argument("--wait-real-node", type=float, default=0.0, metavar="SECONDS",
                           help="wait this long for the machine's real node when another localenv has it "
                                "(default: refuse at once)")

    p = sub.add_parser("install-packages", help="apt-get install the Debian packages of the real node (if missing)")
    p.set_defaults(func=cmd_install_packages)

    # Listed for --help; main() hands every argument after "emulator" to the emulator as is.
    sub.add_parser("emulator", help="run the W&B emulator in the foreground (python -m localenv.wandb_emulator ARGS)")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "emulator":
        return cmd_emulator(argv[1:])
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (cluster.LocalenvError, tools.BuildError, InstallError, lock.NodeBusy, packages.PackageError,
            images.ImageError, host.HostError) as exc:
        print(f"localenv {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
