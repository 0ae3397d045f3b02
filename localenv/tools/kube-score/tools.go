//go:build tools

// Package tools pins the kube-score build (static checks of rendered manifests) used by the chart tests.
package tools

import _ "github.com/zegl/kube-score/cmd/kube-score"
