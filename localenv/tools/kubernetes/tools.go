//go:build tools

// Package tools pins the Kubernetes control-plane binaries, the node binaries (kubelet, kube-proxy) and kubectl used by localenv.
// k8s.io/kubernetes is consumed as a module: go.mod maps each k8s.io staging module to its
// published v0.X.Y release with replace lines.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
