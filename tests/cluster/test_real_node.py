"""The real kubelet node: pods really run (logs, exec, limits), reach Services and cluster DNS
through kube-proxy and CoreDNS, reach host-side services through the bridge's gateway, and
only pods that ask land there. One real node per machine: a second is refused."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_helpers import kwok_nodes

from localenv import node as realnode
from localenv.pytest_plugin import Kube, NodeImages


def pod(name: str, image: str, command: list[str], **spec: Any) -> dict[str, Any]:
    body = {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}], **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": realnode.placement() | body}


def finished(kube: Kube, ns: str, name: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> bool:
        return kube.get("pod", name, namespace=ns)["status"].get("phase") in ("Succeeded", "Failed")

    kube.wait_for(f"pod {ns}/{name} to finish", done, timeout=timeout)
    return kube.get("pod", name, namespace=ns)


def logs(kube: Kube, ns: str, name: str) -> str:
    return kube.kubectl("logs", name, "-n", ns).stdout


def test_a_pod_really_runs_with_logs_and_exec(kube: Kube, real_node: realnode.RealNode, node_images: NodeImages,
                                              namespace) -> None:
    ns = namespace("real")
    kube.apply(pod("hello", node_images.busybox, ["sh", "-c", "echo hello from $(hostname); sleep 30"]), ns)
    kube.wait_for("pod hello running", lambda: kube.get("pod", "hello", namespace=ns)["status"].get("phase")
                  == "Running")
    obj = kube.get("pod", "hello", namespace=ns)
    assert obj["spec"]["nodeName"] == real_node.name
    assert obj["status"]["podIP"].startswith("10.234.0.")
    kube.wait_for("its log line", lambda: "hello from hello" in logs(kube, ns, "hello"))
    out = kube.kubectl("exec", "hello", "-n", ns, "--", "cat", "/proc/1/cmdline").stdout
    assert out.split("\0")[:2] == ["sleep", "30"]


def test_a_memory_limit_is_enforced(kube: Kube, real_node: realnode.RealNode, node_images: NodeImages,
                                    namespace) -> None:
    ns = namespace("real")
    hog = pod("hog", node_images.python, ["python3", "-c", "x = bytearray(256 * 1024 * 1024); print(len(x))"])
    hog["spec"]["containers"][0]["resources"] = {"limits": {"memory": "64Mi"}}
    kube.apply(hog, ns)
    state = finished(kube, ns, "hog")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["reason"] == "OOMKilled" and state["exitCode"] == 137


def test_pods_reach_services_and_cluster_dns(kube: Kube, real_node: realnode.RealNode, node_images: NodeImages,
                                             namespace) -> None:
    ns = namespace("real")
    server = pod("server", node_images.busybox,
                 ["sh", "-c", "while true; do echo reply-from-server | nc -l -p 8080; done"])
    server["metadata"]["labels"] = {"app": "server"}
    server["spec"]["restartPolicy"] = "Always"
    kube.apply(server, ns)
    kube.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
                "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]}}, ns)
    ip = kube.get("service", "echo", namespace=ns)["spec"]["clusterIP"]
    kube.wait_for("the server pod to run",
                  lambda: kube.get("pod", "server", namespace=ns)["status"].get("phase") == "Running")
    script = (f"nslookup echo.{ns}.svc.cluster.local; nslookup kubernetes.default.svc.cluster.local; "
              f"for i in 1 2 3 4 5 6 7 8 9 10; do nc -w 3 {ip} 80 </dev/null && break; sleep 1; done")
    kube.apply(pod("client", node_images.busybox, ["sh", "-c", script]), ns)
    assert finished(kube, ns, "client")["status"]["phase"] == "Succeeded"
    out = logs(kube, ns, "client")
    assert f"Address: {ip}" in out  # the Service's name resolves to its ClusterIP (CoreDNS)
    assert "Address: 10.96.0.1" in out
    assert "reply-from-server" in out  # through the ClusterIP (kube-proxy, nftables), to a pod on the same node


IN_CLUSTER_CLIENT = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
token = open(sa + "/token").read()
for url in (f"https://{host}:{port}/version", "https://kubernetes.default.svc/version"):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    print(url, json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["gitVersion"])
"""


def test_an_in_cluster_client_reaches_the_api_server(kube: Kube, real_node: realnode.RealNode,
                                                     node_images: NodeImages, namespace) -> None:
    ns = namespace("real")
    kube.apply(pod("client", node_images.python, ["python3", "-c", IN_CLUSTER_CLIENT]), ns)
    assert finished(kube, ns, "client")["status"]["phase"] == "Succeeded", logs(kube, ns, "client")
    out = logs(kube, ns, "client")
    version = json.loads(kube.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert out.count(version) == 2, out  # by the Service's environment and by its DNS name


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def host_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_pods_reach_a_host_service_through_the_gateway(kube: Kube, real_node: realnode.RealNode,
                                                       node_images: NodeImages, namespace, host_server: str) -> None:
    url = real_node.pod_url(host_server)
    assert url.startswith(f"http://{real_node.host_ip}:")
    ns = namespace("real")
    kube.apply(pod("fetch", node_images.python,
                   ["python3", "-c", f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"]),
               ns)
    assert finished(kube, ns, "fetch")["status"]["phase"] == "Succeeded", logs(kube, ns, "fetch")
    assert "hello from the host" in logs(kube, ns, "fetch")


def test_only_pods_that_ask_land_on_the_real_node(kube: Kube, real_node: realnode.RealNode, namespace) -> None:
    ns = namespace("real")
    for i in range(4):
        kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"plain-{i}"},
                    "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]}}, ns)
    kube.wait_for("the plain pods to be scheduled",
                  lambda: all(p["spec"].get("nodeName") for p in kube.get("pods", namespace=ns)))
    assert {p["spec"]["nodeName"] for p in kube.get("pods", namespace=ns)} <= set(kwok_nodes(kube))
    node = kube.get("node", real_node.name)
    assert node["metadata"]["labels"][realnode.LABEL] == "true"
    assert {"key": realnode.LABEL, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_a_second_real_node_is_refused_with_one_line(real_node: realnode.RealNode, tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "localenv", "up", "--state-dir", str(tmp_path / "second")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "real node of this machine is in use by" in lines[0], proc.stderr
    assert real_node.state.state_dir in lines[0] and "--no-real-node" in lines[0]
    assert not (tmp_path / "second").exists()  # refused before anything started
