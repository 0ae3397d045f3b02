//go:build tools

// Package tools pins the Helm v3 CLI used by localenv and the chart tests.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
