//go:build tools

// Package tools pins the kwok build (fake nodes and pod lifecycle) used by localenv.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
