"""Configuration files of the real node's components, all pointing inside the state directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from localenv.node import host

NODE_NAME = "localenv-real"
LABEL = "localenv.launch-agent.dev/real-node"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}
DNS_SERVICE_IP = "10.96.0.10"
SERVICE_CIDR = "10.96.0.0/16"  # the API server's --service-cluster-ip-range
CLUSTER_DOMAIN = "cluster.local"
KUBELET_PORT = 10250
DNS_PORT = 53
PAUSE_IMAGE = "localenv.local/pause:3"


@dataclass(frozen=True)
class Paths:
    """Where everything of the node lives: ``<state dir>/node``."""

    root: Path

    @classmethod
    def of(cls, state_dir: Path) -> Paths:
        return cls(state_dir / "node")

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def registry_hosts(self) -> Path:
        """``certs.d``: one ``<host:port>/hosts.toml`` per registry containerd may pull from."""
        return self.containerd / "certs.d"

    @property
    def containerd_config(self) -> Path:
        return self.containerd / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        # Short and fixed (one node per machine): a state directory deep in a temp tree would
        # pass the 104-character limit of socket paths.
        return Path(host.SOCKET_DIR) / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet(self) -> Path:
        # Short for the same reason (the kubelet listens on sockets in its root dir).
        return Path(host.NODE_DIR) / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy-config.yaml"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def host_record(self) -> Path:
        return self.root / "host.json"

    @property
    def images(self) -> Path:
        return self.root / "images.json"


def containerd_toml(paths: Paths, cni_bin_dir: str) -> str:
    c = paths.containerd
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"
# Plugins the node does not use, and the one that would create /opt/containerd.
disabled_plugins = [
  "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # The VM withholds CAP_SYS_RESOURCE: runc could not raise a sandbox's oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  max_container_log_line_size = 16384

# Registries are configured per host in certs.d/<host:port>/hosts.toml (e.g. a local
# registry over plain HTTP that build tests write); none by default.
[{cri}.registry]
  config_path = "{c / 'certs.d'}"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{paths.runc_root}"

[{cri}.cni]
  bin_dir = "{cni_bin_dir}"
  conf_dir = "{paths.cni_conf_dir}"
  max_conf_num = 1
"""


def cni_conflist(paths: Paths) -> str:
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "localenv",
        "plugins": [{
            "type": "bridge",
            "bridge": host.BRIDGE,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": host.POD_CIDR, "gateway": host.GATEWAY}]],
                # Only the Service range is routed (through the node); no default route, so
                # nothing in a pod even tries to leave the machine.
                "routes": [{"dst": SERVICE_CIDR}],
                "dataDir": str(paths.cni_ipam_dir),
            },
        }],
    }, indent=2)


def kubelet_config(paths: Paths, ca_cert: Path, healthz_port: int) -> str:
    return yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": host.GATEWAY,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca_cert)}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        # The machine has cgroup v1; containerd 1.6 cannot tell the kubelet its driver.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{host.CGROUP_ROOT}",
        "failSwapOn": False,
        "makeIPTablesUtilChains": False,
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",
        "podLogsDir": str(paths.root / "pod-logs"),
        "volumePluginDir": str(paths.root / "volume-plugins"),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerWithTaints": [TAINT],
        # A shared machine: never evict for the disk or memory that other work uses.
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
                         "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "maxPods": 110,
    }, sort_keys=False)


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> str:
    return yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": host.GATEWAY,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": host.POD_CIDR,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": [f"{host.GATEWAY}/32"],
        # Every Service connection is masqueraded, so replies from a pod on the same bridge go
        # back through the node's NAT.
        "nftables": {"masqueradeAll": True, "syncPeriod": "30s", "minSyncPeriod": "0s"},
        # Zero: leave the machine's conntrack sysctls as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
                      "udpTimeout": "0s", "udpStreamTimeout": "0s"},
    }, sort_keys=False)


def corefile(kubeconfig: Path, health_port: int, ready_port: int) -> str:
    return f""".:{DNS_PORT} {{
    bind {host.GATEWAY}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} {NODE_NAME}-coredns
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loadbalance
}}
"""


def dns_objects() -> list[dict]:
    """The kube-dns Service (the address in every pod's resolv.conf) and its endpoint: CoreDNS
    on the gateway, so ClusterIP traffic to DNS goes through kube-proxy like any Service."""
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
    ports = [("dns", "UDP"), ("dns-tcp", "TCP")]
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": DNS_SERVICE_IP,
                  "ports": [{"name": n, "port": 53, "protocol": p, "targetPort": DNS_PORT} for n, p in ports]}},
        endpoint_slice("kube-system", "kube-dns", [(n, DNS_PORT, p) for n, p in ports]),
    ]


def endpoint_slice(namespace: str, service: str, ports: list[tuple[str, int, str]], name: str | None = None) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name or f"{service}-localenv", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service,
                                "endpointslice.kubernetes.io/managed-by": "localenv.launch-agent.dev"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host.GATEWAY], "conditions": {"ready": True}}],
        "ports": [{"name": n, "port": port, "protocol": proto} for n, port, proto in ports],
    }


def rbac_objects(apiserver_kubelet_user: str, coredns_user: str) -> list[dict]:
    """The API server's kubelet client may use the kubelet API (logs, exec); CoreDNS reads
    Services, EndpointSlices, Namespaces and Pods."""
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "localenv:apiserver-kubelet-client"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:kubelet-api-admin"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": apiserver_kubelet_user}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "localenv:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["services", "namespaces", "pods", "endpoints"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "localenv:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "localenv:coredns"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": coredns_user}]},
    ]


def placement() -> dict:
    """What a pod spec adds to run on the real node (and only there)."""
    return {"nodeSelector": {LABEL: "true"}, "tolerations": [{"key": LABEL, "operator": "Equal", "value": "true",
                                                               "effect": "NoSchedule"}]}
