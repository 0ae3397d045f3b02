"""``python -m localenv down`` leaves the machine exactly as ``up`` found it: no process, shim,
mount, bridge, cgroup or nftables table of the node left, every sysctl it changed restored and
the fixed paths it created removed. Runs its own localenv (with the real node, waiting for the
machine's lock), so it never shares the session's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from localenv import cluster, images, tools
from localenv.node import config, host, lifecycle, runtime
from localenv.node.config import Paths


def processes_naming(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{entry.name}: {cmd[:120]}")
    return found


def test_down_restores_the_machine(tmp_path: Path) -> None:
    state_dir = tmp_path / "env"
    # Take the machine's lock first (waiting for another session's node to go), so the snapshot
    # is of the machine without any real node.
    machine_lock = lifecycle.acquire_lock(state_dir, 3600, print)
    try:
        before = host.snapshot()
        state = cluster.up(state_dir, bin_dir=tools.bin_dir(), with_emulator=False, tie_to_parent=True)
        lifecycle.attach(state, machine_lock, tie_to_parent=True)
        paths = Paths.of(state_dir)
        busybox = images.busybox()
        runtime.import_archive(paths, busybox)
        kubectl = [f"{state.bin_dir}/kubectl", f"--kubeconfig={state.kubeconfig}"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "namespace": "default"},
               "spec": {**config.placement(), "containers": [
                   {"name": "c", "image": busybox.ref, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}}
        subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(pod), text=True, check=True,
                       capture_output=True)
        deadline = time.monotonic() + 120
        phase = ""
        while phase != "Running" and time.monotonic() < deadline:
            time.sleep(0.5)
            phase = subprocess.run([*kubectl, "get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"],
                                   capture_output=True, text=True).stdout
        assert phase == "Running"
        during = host.snapshot()
        # The node really changed the machine (so the comparison below means something).
        assert host.BRIDGE in during["links"] and f"inet {host.GUARD_TABLE}" in during["nft_tables"]
        assert "ip kube-proxy" in during["nft_tables"]
        assert during["sysctls"]["net.ipv4.ip_forward"] == "1" and during["sysctls"]["kernel.panic_on_oops"] == "1"
        assert runtime.shim_pids(paths) and host.mounts_under(state_dir) and runtime.cgroup_pids()
        assert host.mounts_under(Path(host.NODE_DIR))  # the pod's volumes (its token)

        down = subprocess.run([sys.executable, "-m", "localenv", "down", "--state-dir", str(state_dir)],
                              capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stderr
    finally:
        machine_lock.release()
    assert processes_naming(str(state_dir)) == []
    assert host.mounts_under(state_dir) == [] and host.mounts_under(Path(host.NODE_DIR)) == []
    assert not state_dir.exists()
    assert host.snapshot() == before
