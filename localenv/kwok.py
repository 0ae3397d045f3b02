"""kwok configuration: fake nodes, and the pod lifecycle they simulate.

Pods scheduled on a localenv node become Running and Ready at once. Pods that run to
completion — ``restartPolicy`` ``Never`` or ``OnFailure``, as every Job's pods, or carrying one
of the annotations below — then finish after a delay; ``Always`` pods (Deployments) keep running. Two annotations on a pod
steer that, so tests and the demo can keep a run going or fail it:

``localenv.launch-agent.dev/run-seconds: "30"``
    seconds the pod runs before it finishes (default ``2``).
``localenv.launch-agent.dev/outcome: "succeed" | "fail" | "keep-running"``
    how it finishes: phase Succeeded (exit 0, the default), phase Failed (exit 1, reason
    Error), or never.

Pods that are deleted go away as soon as kwok sees the deletion (there is no kubelet to wait
for), which is what lets ``kubectl drain`` and evictions complete.

There is no Kubeflow training operator and no Volcano controller here. A PyTorchJob or a
Volcano Job that carries one of the two annotations above gets the status its operator would
write: running at once, then succeeded or failed after the delay (Kubeflow conditions
``Created``/``Running``/``Succeeded``/``Failed``; Volcano ``status.state.phase``). Without the
annotations kwok leaves them alone, so a test can write their status itself. No pods are made
for them.
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml

ANNOTATION_PREFIX = "localenv.launch-agent.dev"
RUN_SECONDS = f"{ANNOTATION_PREFIX}/run-seconds"
OUTCOME = f"{ANNOTATION_PREFIX}/outcome"
OUTCOMES = ("succeed", "fail", "keep-running")
DEFAULT_RUN_MILLISECONDS = 2000
NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_ANNOTATION_VALUE = "fake"
NODE_LEASE_SECONDS = 40


def _annotation(key: str) -> str:
    return f'.metadata.annotations["{key}"]'


# A pod runs to completion when its restartPolicy says so (every Job pod, `helm test` pods)
# or when it asks for a run length / outcome.
_FINISHING = (
    f'(.spec.restartPolicy == "Never") or (.spec.restartPolicy == "OnFailure")'
    f' or ({_annotation(RUN_SECONDS)} != null) or ({_annotation(OUTCOME)} != null)'
)
_RUN_DELAY = f'{_annotation(RUN_SECONDS)} | if . == null or . == "" then empty else (. | tostring) + "s" end'

_LIVE_AND_READY = [
    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
    {"key": ".status.phase", "operator": "In", "values": ["Running"]},
    {"key": '.status.conditions.[] | select( .type == "Ready" ) | .status', "operator": "In", "values": ["True"]},
    {"key": _FINISHING, "operator": "In", "values": ["true"]},
]

_NODE_STATUS = """\
{{ $now := Now }}
{{ $since := or .metadata.creationTimestamp $now }}
conditions:
{{ range NodeConditions }}
- type: {{ .type | Quote }}
  status: {{ .status | Quote }}
  reason: {{ .reason | Quote }}
  message: {{ .message | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $since | Quote }}
{{ end }}
addresses:
{{ with .status.addresses }}
{{ YAML . 1 }}
{{ else }}
- type: InternalIP
  address: {{ NodeIP | Quote }}
- type: Hostname
  address: {{ NodeName | Quote }}
{{ end }}
allocatable:
{{ with .status.allocatable }}
{{ YAML . 1 }}
{{ else }}
  cpu: "32"
  memory: 256Gi
  pods: "110"
{{ end }}
capacity:
{{ with .status.capacity }}
{{ YAML . 1 }}
{{ else }}
  cpu: "32"
  memory: 256Gi
  pods: "110"
{{ end }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  kubeProxyVersion: {{ printf "kwok-%s" Version | Quote }}
  containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
  kernelVersion: {{ printf "kwok-%s" Version | Quote }}
  osImage: localenv
  bootID: ""
  machineID: ""
  systemUUID: ""
phase: Running
"""

_POD_RUNNING = """\
{{ $now := Now }}
phase: Running
startTime: {{ $now | Quote }}
conditions:
- type: PodScheduled
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ range .spec.readinessGates }}
- type: {{ .conditionType | Quote }}
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ with NodeIPWith .spec.nodeName }}
hostIP: {{ . | Quote }}
hostIPs:
- ip: {{ . | Quote }}
{{ end }}
{{ with PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ . | Quote }}
podIPs:
- ip: {{ . | Quote }}
{{ end }}
"""


def _pod_finished(phase: str, exit_code: int, reason: str) -> str:
    return f"""\
{{{{ $now := Now }}}}
phase: {phase}
conditions:
- type: Ready
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{{{ $now | Quote }}}}
- type: ContainersReady
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{{{ $now | Quote }}}}
containerStatuses:
{{{{ range .spec.containers }}}}
- name: {{{{ .name | Quote }}}}
  image: {{{{ .image | Quote }}}}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: {exit_code}
      reason: {reason}
      finishedAt: {{{{ $now | Quote }}}}
{{{{ end }}}}
"""


def _stage(name: str, kind: str, selector: list[dict], next_: Mapping, delay: Mapping | None = None,
           api_group: str = "v1") -> dict:
    spec: dict = {
        "resourceRef": {"apiGroup": api_group, "kind": kind},
        "selector": {"matchExpressions": selector},
        "next": dict(next_),
    }
    if delay:
        spec["delay"] = dict(delay)
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def stages() -> list[dict]:
    """Stage objects for nodes (initialize, heartbeat), pods (run, finish, delete) and workload CRs."""
    run_delay = {
        "durationMilliseconds": DEFAULT_RUN_MILLISECONDS,
        "durationFrom": {"expressionFrom": _RUN_DELAY},
    }
    return [
        _stage(
            "localenv-node-initialize", "Node",
            [{"key": '.status.conditions.[] | select( .type == "Ready" ) | .status', "operator": "NotIn", "values": ["True"]}],
            {"statusTemplate": _NODE_STATUS},
        ),
        _stage(
            "localenv-node-heartbeat", "Node",
            [
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": '.status.conditions.[] | select( .type == "Ready" ) | .status', "operator": "In", "values": ["True"]},
            ],
            {"statusTemplate": _NODE_STATUS},
            {"durationMilliseconds": 60000, "jitterDurationMilliseconds": 65000},
        ),
        _stage(
            "localenv-pod-running", "Pod",
            [
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                {"key": '.status.conditions.[] | select( .type == "Ready" ) | .status', "operator": "NotIn", "values": ["True"]},
            ],
            {"statusTemplate": _POD_RUNNING},
        ),
        _stage(
            "localenv-pod-succeed", "Pod",
            [*_LIVE_AND_READY, {"key": _annotation(OUTCOME), "operator": "NotIn", "values": ["fail", "keep-running"]}],
            {"statusTemplate": _pod_finished("Succeeded", 0, "Completed")},
            run_delay,
        ),
        _stage(
            "localenv-pod-fail", "Pod",
            [*_LIVE_AND_READY, {"key": _annotation(OUTCOME), "operator": "In", "values": ["fail"]}],
            {"statusTemplate": _pod_finished("Failed", 1, "Error")},
            run_delay,
        ),
        _stage(
            "localenv-pod-delete", "Pod",
            [
                {"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                {"key": ".metadata.finalizers", "operator": "DoesNotExist"},
            ],
            {"delete": True},
        ),
        *workload_stages(run_delay),
    ]


# Workload kinds whose operator kwok plays: (group/version, kind).
KUBEFLOW_KINDS = (("kubeflow.org/v1", "PyTorchJob"),)
VOLCANO_KINDS = (("batch.volcano.sh/v1alpha1", "Job"),)

_SIMULATED = [
    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
    {"key": f"({_annotation(RUN_SECONDS)} != null) or ({_annotation(OUTCOME)} != null)",
     "operator": "In", "values": ["true"]},
]


def _kubeflow_status(*true_types: str) -> str:
    lines = ["{{ $now := Now }}", "conditions:"]
    for ctype in ("Created", "Running", "Succeeded", "Failed"):
        if ctype == "Running" or ctype in true_types:
            status = "True" if ctype in true_types else "False"
            lines += [f"- type: {ctype}", f'  status: "{status}"', f"  reason: Job{ctype}",
                      "  lastTransitionTime: {{ $now | Quote }}"]
    if "Succeeded" in true_types or "Failed" in true_types:
        lines.append("completionTime: {{ $now | Quote }}")
    return "\n".join(lines) + "\n"


def _volcano_status(phase: str) -> str:
    return "{{ $now := Now }}\nstate:\n  phase: " + phase + "\n  lastTransitionTime: {{ $now | Quote }}\n"


def workload_stages(run_delay: Mapping) -> list[dict]:
    """Stages standing in for the Kubeflow and Volcano operators on annotated custom resources."""
    out: list[dict] = []
    for group_version, kind in KUBEFLOW_KINDS:
        name = f"localenv-{kind.lower()}"
        running = '.status.conditions.[] | select( .type == "Running" ) | .status'
        out += [
            _stage(f"{name}-running", kind, [*_SIMULATED, {"key": ".status.conditions", "operator": "DoesNotExist"}],
                   {"statusTemplate": _kubeflow_status("Created", "Running")}, api_group=group_version),
            _stage(f"{name}-succeed", kind,
                   [*_SIMULATED, {"key": running, "operator": "In", "values": ["True"]},
                    {"key": _annotation(OUTCOME), "operator": "NotIn", "values": ["fail", "keep-running"]}],
                   {"statusTemplate": _kubeflow_status("Created", "Succeeded")}, run_delay, api_group=group_version),
            _stage(f"{name}-fail", kind,
                   [*_SIMULATED, {"key": running, "operator": "In", "values": ["True"]},
                    {"key": _annotation(OUTCOME), "operator": "In", "values": ["fail"]}],
                   {"statusTemplate": _kubeflow_status("Created", "Failed")}, run_delay, api_group=group_version),
        ]
    for group_version, kind in VOLCANO_KINDS:
        name = "localenv-volcano-job"
        phase = ".status.state.phase"
        out += [
            _stage(f"{name}-running", kind, [*_SIMULATED, {"key": phase, "operator": "DoesNotExist"}],
                   {"statusTemplate": _volcano_status("Running")}, api_group=group_version),
            _stage(f"{name}-complete", kind,
                   [*_SIMULATED, {"key": phase, "operator": "In", "values": ["Running"]},
                    {"key": _annotation(OUTCOME), "operator": "NotIn", "values": ["fail", "keep-running"]}],
                   {"statusTemplate": _volcano_status("Completed")}, run_delay, api_group=group_version),
            _stage(f"{name}-fail", kind,
                   [*_SIMULATED, {"key": phase, "operator": "In", "values": ["Running"]},
                    {"key": _annotation(OUTCOME), "operator": "In", "values": ["fail"]}],
                   {"statusTemplate": _volcano_status("Failed")}, run_delay, api_group=group_version),
        ]
    return out


def simulated_group_versions() -> list[str]:
    """Group/versions kwok needs served (their CRDs installed) before it starts."""
    return sorted({gv for gv, _ in (*KUBEFLOW_KINDS, *VOLCANO_KINDS)})


def config_yaml() -> str:
    """The ``--config`` file kwok is started with (Stage documents)."""
    return yaml.safe_dump_all(stages(), sort_keys=False)


def node(name: str, cpu: str = "32", memory: str = "256Gi", pods: str = "110") -> dict:
    """A fake Node kwok manages: no taints, so ordinary pods schedule on it."""
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: NODE_ANNOTATION_VALUE, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {"allocatable": resources, "capacity": resources},
    }
